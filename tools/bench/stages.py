"""Where a submit's time goes, read from the nodes' own histograms over a workload.

The bench client sees an acknowledgement time; the nodes see the handler's time
(`jobnode_http_request_duration_seconds` for `POST /api/v1/jobs`) and, inside it, each
submit batch's MongoDB insert and Redis enqueue (`jobnode_submit_write_duration_seconds`).
Scraping every node before and after a workload and subtracting gives those histograms for
the workload alone. Quantiles are estimated the way Prometheus's `histogram_quantile`
does (linear within the bucket that holds the rank), so each is good to the width of its
bucket: the report carries the bucket bounds next to the estimate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tools.bench.cluster import progress

SUBMIT_ROUTE = ("POST", "/api/v1/jobs")
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
SCRAPE_TIMEOUT_S = 10.0

# stage -> cumulative bucket counts by upper bound (seconds; the last bound is +Inf)
Histograms = dict[str, dict[float, float]]


def _wanted(labels: dict[str, str]) -> str | None:
    """The stage a histogram sample belongs to, or None for series this module ignores."""
    if "stage" in labels:
        return labels["stage"]
    if (labels.get("method"), labels.get("route")) == SUBMIT_ROUTE:
        return "http_submit_handler"
    return None


def parse(text: str) -> Histograms:
    """The submit-path buckets of one node's /metrics text."""
    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("jobnode_submit_write_duration_seconds", "jobnode_http_request_duration_seconds"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            stage = _wanted(sample.labels)
            if stage is not None:
                out.setdefault(stage, {})[float(sample.labels["le"])] = sample.value
    return out


async def scrape(metrics_urls: Sequence[str]) -> Histograms | None:
    """Every node's submit-path buckets (`metrics_urls` as cluster.json gives them), summed.

    None, said on stderr, when a node's /metrics cannot be read (METRICS_ENABLED=false, say):
    the split is a bonus of the latency workload, never a reason to lose its figures.
    """
    total: Histograms = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)) as session:
            for url in metrics_urls:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    text = await resp.text()
                for stage, buckets in parse(text).items():
                    into = total.setdefault(stage, {})
                    for bound, count in buckets.items():
                        into[bound] = into.get(bound, 0.0) + count
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        progress(f"latency: cannot read the nodes' /metrics ({exc!r}); no per-stage split")
        return None
    return total


def quantile(buckets: dict[float, float], q: float) -> tuple[float, float, float] | None:
    """(estimate, lower bound, upper bound) of quantile q from cumulative buckets; None if empty."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):  # beyond the last finite bucket: all one can say is "above"
                return lower, lower, bound
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share, lower, bound
        lower, below = bound, count
    return None


def between(before: Histograms, after: Histograms) -> dict[str, Any]:
    """Per stage: observations and quantile estimates (ms) for what happened between two scrapes."""
    report: dict[str, Any] = {}
    for stage, buckets in sorted(after.items()):
        delta = {bound: count - before.get(stage, {}).get(bound, 0.0) for bound, count in buckets.items()}
        count = delta.get(float("inf"), 0.0)
        entry: dict[str, Any] = {"count": int(count)}
        for name, q in QUANTILES.items():
            found = quantile(delta, q)
            entry[name] = None if found is None else {"ms": _ms(found[0]), "bucket_ms": [_ms(found[1]), _ms(found[2])]}
        report[stage] = entry
    return report


def _ms(seconds: float) -> float | None:
    return None if seconds == float("inf") else round(seconds * 1000, 2)  # JSON has no Infinity
