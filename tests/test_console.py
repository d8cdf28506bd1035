"""What the console needs from a node, without a browser: its files served under a strict
policy, the queue figures of GET /api/v1/queues, the hour of throughput, and the job list's
filters. The browser itself is in test_console_browser.py (slow)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

from jobnode.console.site import CONTENT_SECURITY_POLICY, static_files
from jobnode.observability.throughput_history import ThroughputHistory
from jobnode.storage.redis.queue_depths import OVERFLOW_QUEUE, QueueDepths
from tests.auth_fixtures import auth_env, bearer, token_for
from tests.harness import start_node  # noqa: F401  (fixture)

STATIC = Path(str(resources.files("jobnode.console") / "static"))


# --- the files and how they are served ---------------------------------------------------------


async def test_the_console_is_served_with_its_security_headers_and_no_token(start_node):
    client = await start_node(WORKER_COUNT="0", **auth_env())  # auth on: the page itself is public
    page = await client.get("/ui/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "<title>jobnode console</title>" in await page.text()
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    script = await client.get("/ui/js/main.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert script.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    unchanged = await client.get("/ui/js/main.js", headers={"If-None-Match": script.headers["ETag"]})
    assert unchanged.status == 304
    bare = await client.get("/ui", allow_redirects=False)
    assert bare.status == 308 and bare.headers["Location"] == "/ui/"
    # The data behind the page still needs a token.
    assert (await client.get("/api/v1/queues")).status == 401


async def test_only_the_console_files_are_served(start_node):
    client = await start_node(WORKER_COUNT="0")
    for path in ("/ui/nope.js", "/ui/../jobnode/__init__.py", "/ui/%2e%2e/pyproject.toml", "/ui/js/../../site.py"):
        answer = await client.get(path)
        assert answer.status == 404, path
        assert (await answer.json())["error"]["code"] == "not_found"


def test_the_pages_carry_no_inline_code_the_policy_would_block():
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "an inline style"
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"
    for referenced in re.findall(r'(?:src|href)="(?!#|https?:)([^"]+)"', html):
        assert referenced in static_files(), referenced
    for path in STATIC.glob("js/*.js"):
        source = path.read_text()
        assert "innerHTML" not in source and "eval(" not in source and "new Function" not in source, path.name
        for imported in re.findall(r'from "\./([^"]+)"', source):
            assert (STATIC / "js" / imported).is_file(), f"{path.name} imports a missing {imported}"
        assert "setAttribute(\"style\"" not in source, path.name


def test_the_package_data_covers_every_console_file():
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"jobnode.console" = ["static/*", "static/**/*"]' in pyproject
    assert {"index.html", "console.css", "js/main.js", "favicon.svg"} <= set(static_files())


# --- GET /api/v1/queues ------------------------------------------------------------------------


async def test_queue_figures_split_the_depth_by_state_and_priority_band(start_node):
    client = await start_node(WORKER_COUNT="0")  # no worker: every ready job is unroutable
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    jobs = ([{"type": "echo", "priority": "high"}] * 2 + [{"type": "echo", "priority": 5}]
            + [{"type": "echo", "priority": "low"}] * 3 + [{"type": "echo", "scheduled_at": later}])
    answer = await client.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert answer.status == 201, await answer.text()
    body = await (await client.get("/api/v1/queues")).json()
    [row] = [row for row in body["queues"] if row["queue"] == "default"]
    assert row == {"queue": "default", "ready": 6, "delayed": 1, "processing": 0,
                   "by_priority": {"high": 2, "normal": 1, "low": 3}, "unroutable": 6}
    assert body["throughput"]["window_s"] == 3600 and isinstance(body["throughput"]["points"], list)


async def test_queue_figures_are_for_monitors_too(start_node):
    client = await start_node(WORKER_COUNT="0", **auth_env())
    assert (await client.get("/api/v1/queues", headers=bearer(token_for("worker")))).status == 200


async def test_delayed_jobs_past_the_scan_limit_are_counted_apart(redis_client, key_prefix):
    for index, queue in enumerate(("mail", "mail", "default")):
        await redis_client.hset(f"{key_prefix}:job:j{index}", "queue", queue)
        await redis_client.zadd(f"{key_prefix}:delayed", {f"j{index}": index})
    await redis_client.hset(f"{key_prefix}:job:j3", "queue", "")  # jobs of the default queue store it empty
    await redis_client.zadd(f"{key_prefix}:leases", {"j3": 1})
    rows = {row.queue: row for row in await QueueDepths(redis_client, key_prefix, scan_max=2).read([])}
    assert rows["mail"].delayed == 2 and rows[OVERFLOW_QUEUE].delayed == 1
    assert rows["default"].processing == 1 and rows["default"].delayed == 0


# --- the hour of throughput --------------------------------------------------------------------


def test_throughput_history_keeps_one_point_per_step_for_its_window():
    history = ThroughputHistory(window_s=60, step_s=10)
    history.observe(1000, 0)
    for second in range(1, 121):  # sampled every second, 2 jobs a second
        history.observe(1000 + second, 2 * second)
    points = history.points()
    assert [at for at, _ in points] == [1060 + 10 * i for i in range(7)]  # one a step, the last minute only
    assert all(rate == 2 for _, rate in points)


def test_throughput_history_skips_a_counter_that_went_back():
    history = ThroughputHistory(window_s=3600, step_s=10)
    history.observe(0, 500)
    history.observe(10, 600)
    history.observe(20, 3)  # Redis lost its counter
    history.observe(30, 13)
    assert history.points() == [[10, 10.0], [30, 1.0]]


# --- the job list's filters ----------------------------------------------------------------------


async def test_the_job_list_filters_by_queue_id_and_idempotency_key(start_node):
    client = await start_node(WORKER_COUNT="0")
    keyed = await (await client.post("/api/v1/jobs", json={"type": "echo"},
                                      headers={"Idempotency-Key": "order-42"})).json()
    other = await (await client.post("/api/v1/jobs", json={"type": "echo"})).json()

    async def ids(query: str) -> list[str]:
        answer = await client.get(f"/api/v1/jobs?{query}")
        assert answer.status == 200, await answer.text()
        return [job["id"] for job in (await answer.json())["jobs"]]

    assert await ids("idempotency_key=order-42") == [keyed["id"]]
    assert await ids(f"id={other['id']}") == [other["id"]]
    assert await ids(f"id={other['id']}&status=completed") == []
    assert await ids("queue=default") == [other["id"], keyed["id"]]
    assert await ids("queue=elsewhere") == []
    for query, field in (("id=XYZ", "id"), ("queue=Bad%20Name", "queue"), (f"idempotency_key={'k' * 201}",
                                                                            "idempotency_key")):
        answer = await client.get(f"/api/v1/jobs?{query}")
        assert answer.status == 400 and (await answer.json())["error"]["details"]["field"] == field, query
