"""`jobnode status|submit|jobs` and scripts/monitor.sh against a real in-process node (Redis, SecantusDB).

main() runs in a thread because it starts its own event loop, while the node is served by the
test's loop; the scripts run as subprocesses for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from jobnode.cli.main import main
from harness import start_node, without_node_logs  # noqa: F401  (a fixture)
from test_client import closed_port
from test_client import closed_port
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_client_env(monkeypatch, tmp_path):
    """No JOBNODE_* variables from the developer's shell, and a private place for stored tokens."""
    for name in ("JOBNODE_URL", "JOBNODE_TOKEN", "JOBNODE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
async def node_url(start_node) -> str:
    """The URL of a running node that has elected itself (a lone node leads its own cluster)."""
    client = await start_node(WORKER_COUNT="2")
    url = str(client.make_url("")).rstrip("/")

    async def leads() -> bool:
        leader = await (await client.get("/api/v1/leader")).json()
        # The node list comes from MongoDB records that catch up with the election a moment later.
        nodes = await (await client.get("/api/v1/nodes")).json()
        return leader.get("leader_id") == "node-1" and [n["role"] for n in nodes["nodes"]] == ["leader"]

    await wait_until(leads, timeout_s=30, message="the lone node never led")
    return url


async def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, without_node_logs(out), err


def table_rows(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the table whose header starts with `first_header`, as {HEADER: cell} by column start."""
    lines = next(block for block in text.split("\n\n") if block.startswith(first_header)).splitlines()
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    headers = re.findall(r"\S+(?: \S+)*", lines[0])
    bounds = list(zip(starts, starts[1:] + [None]))
    return [{h: row[a:b].strip() for h, (a, b) in zip(headers, bounds)} for row in lines[1:]]


def summary_of(text: str) -> dict[str, str]:
    first = text.split("\n\n")[0]
    return dict(re.match(r"(\S+)\s+(.*)", line).groups() for line in first.splitlines())


async def test_status_names_the_leader_and_lists_every_node(node_url, capsys):
    code, out, _ = await run(capsys, "status", "--url", node_url)
    assert code == 0
    summary = summary_of(out)
    assert summary["node"] == "node-1 (leader)"
    assert summary["leader"].startswith("node-1 ")
    assert summary["term"].isdigit() and summary["algorithm"] == "bully"
    assert summary["workers"].endswith("of 2")
    nodes = table_rows(out, "NODE")
    assert [(row["NODE"], row["ROLE"], row["WORKERS"]) for row in nodes] == [("node-1", "leader", "2")]
    queue = table_rows(out, "QUEUE")[0]
    assert queue["PENDING"] == "0" and "DEAD_LETTER" in queue


async def test_status_json_carries_every_view(node_url, capsys):
    code, out, _ = await run(capsys, "status", "--url", node_url, "--json")
    snapshot = json.loads(out)
    assert code == 0 and snapshot["url"] == node_url
    assert snapshot["leader"]["leader_id"] == "node-1"
    assert [node["id"] for node in snapshot["nodes"]["nodes"]] == ["node-1"]
    assert {worker["node_id"] for worker in snapshot["workers"]["workers"]} == {"node-1"}


async def test_status_asks_the_next_url_when_a_node_is_down(node_url, capsys):
    dead = f"http://127.0.0.1:{closed_port()}"
    code, out, _ = await run(capsys, "status", "--url", f"{dead},{node_url}", "--json")
    assert code == 0 and json.loads(out)["url"] == node_url
    code, _, err = await run(capsys, "status", "--url", f"{dead},{dead}")
    assert code == 1 and err.startswith("error: no node answered: cannot reach")


async def test_every_command_takes_several_urls_and_moves_past_a_dead_one(node_url, capsys):
    dead = f"http://127.0.0.1:{closed_port()}"
    code, out, err = await run(capsys, "jobs", "--url", f"{dead},{node_url}", "--json")
    assert code == 0, err


async def test_submit_count_shows_progress_and_throughput_then_jobs_lists_them(node_url, capsys):
    code, out, err = await run(
        capsys, "submit", "echo", "--url", node_url, "--payload", '{"n": 1}', "--count", "30", "--wait",
        "--wait-timeout", "60",
    )
    assert code == 0
    assert "submitting: 30/30 (100%)" in err and "finishing: 30/30 (100%)" in err
    assert re.search(r"^submitted 30 jobs in [\d.]+s \([\d.]+ jobs/s\)$", out, re.M)
    assert re.search(r"^finished 30 jobs in .*: completed 30, failed 0, cancelled 0$", out, re.M)

    async def listed_completed() -> int:
        # Listing reads MongoDB, which the outbox writer brings up to date a moment after Redis.
        _, out, _ = await run(capsys, "jobs", "--url", node_url, "--status", "completed", "--json")
        return len(json.loads(out)["jobs"]) == 30

    await wait_until(listed_completed, timeout_s=30, interval_s=0.2, message="30 completed jobs listed")
    code, out, _ = await run(capsys, "jobs", "--url", node_url, "--status", "completed", "--limit", "50")
    rows = table_rows(out, "ID")
    assert code == 0 and len(rows) == 30
    assert {(row["TYPE"], row["STATUS"], row["ATTEMPTS"]) for row in rows} == {("echo", "completed", "1")}

    code, out, _ = await run(capsys, "jobs", "get", rows[0]["ID"], "--url", node_url, "--json")
    job = json.loads(out)
    assert code == 0 and job["id"] == rows[0]["ID"] and job["result"] == {"n": 1}


async def test_submit_one_job_and_filter_by_type(node_url, capsys):
    code, out, _ = await run(capsys, "submit", "sleep", "--url", node_url, "--payload", '{"seconds": 0}',
                             "--priority", "high", "--wait", "--json")
    job = json.loads(out)
    assert code == 0 and job["status"] == "completed" and job["priority"] == 10
    code, out, _ = await run(capsys, "jobs", "list", "--url", node_url, "--type", "sleep", "--json")
    assert code == 0 and [listed["id"] for listed in json.loads(out)["jobs"]] == [job["id"]]


async def test_monitor_script_shows_the_cluster_once(node_url, tmp_path):
    cluster_file = tmp_path / "dev" / "cluster.json"
    cluster_file.parent.mkdir()
    dead = f"http://127.0.0.1:{closed_port()}"
    cluster_file.write_text(json.dumps({"nodes": [{"id": "gone", "url": dead}, {"id": "node-1", "url": node_url}]}))
    env = {**os.environ, "JOBNODE_DEV_DIR": str(cluster_file.parent), "PATH": f"{Path(sys.executable).parent}:"
           + os.environ.get("PATH", "")}
    env.pop("JOBNODE_URL", None)
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "monitor.sh"), "--once", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert summary_of(out.decode())["leader"].startswith("node-1 ")


async def test_jobs_all_follows_every_page(node_url, capsys):
    code, _, _ = await run(capsys, "submit", "echo", "--url", node_url, "--count", "7", "--json")
    assert code == 0

    async def listed() -> bool:
        _, out, _ = await run(capsys, "jobs", "--url", node_url, "--type", "echo", "--all", "--json")
        return json.loads(out)["count"] == 7

    await wait_until(listed, timeout_s=30, interval_s=0.2, message="7 jobs listed")
    code, out, err = await run(capsys, "jobs", "--url", node_url, "--type", "echo", "--limit", "3", "--all")
    assert code == 0 and len(table_rows(out, "ID")) == 7 and "more jobs" not in err
    code, _, err = await run(capsys, "jobs", "--url", node_url, "--limit", "3")
    assert code == 0 and "more jobs: add --cursor" in err
    code, _, err = await run(capsys, "jobs", "--url", node_url, "--all", "--cursor", "x")
    assert code == 2 and "--all" in err


def _recorded(client):
    async def history() -> dict | None:
        answer = await client.elections(limit=5)
        return answer if answer["count"] else None

    return history


async def test_the_client_reads_the_election_views(node_url):
    from jobnode.client import AsyncClient, NotFoundError

    async with AsyncClient(node_url) as client:
        view = await client.election()
        assert view["node_id"] == view["leader_id"] == "node-1" and view["current_algorithm"] == "bully"
        history = await wait_until(
            _recorded(client), timeout_s=30, interval_s=0.1, message="the first leader change is in MongoDB"
        )
        assert history["elections"][0]["leader"] == "node-1"
        described = await client.algorithms()
        assert described["current"] == "bully" and len(described["algorithms"]) == 3
        assert (await client.algorithms("raft"))["current"] is False
        with pytest.raises(NotFoundError):
            await client.algorithms("paxos")


async def test_a_rerun_with_the_same_key_adds_only_the_missing_jobs(node_url, capsys):
    later = ("--at", "2099-01-01T00:00:00Z")  # delayed: the jobs wait, so nothing but the submit is measured
    code, out, _ = await run(capsys, "submit", "echo", *later, "--url", node_url, "--count", "5", "--key", "run-x",
                             "--json")
    first = json.loads(out)["ids"]
    code, out, err = await run(capsys, "submit", "echo", *later, "--url", node_url, "--count", "8", "--key",
                               "run-x", "--json")
    again = json.loads(out)["ids"]
    assert code == 0 and again[:5] == first and len(set(again)) == 8


async def test_status_and_submit_carry_the_token_of_a_node_with_auth(start_node, capsys, monkeypatch):
    from jobnode.client import AsyncClient

    client = await start_node(AUTH_ENABLED="true", JWT_SECRET="4d" * 32, ADMIN_USERNAME="ops",
                              ADMIN_PASSWORD="a-long-admin-password")
    url = str(client.make_url("")).rstrip("/")
    async with AsyncClient(url) as api:
        token = (await wait_until(lambda: api.login("ops", "a-long-admin-password"), timeout_s=30,
                                  message="the bootstrapped admin can log in", ignore=(Exception,)))["access_token"]
    code, _, err = await run(capsys, "status", "--url", url)
    assert code == 1 and "unauthorized" in err and "jobnode login" in err
    code, out, _ = await run(capsys, "status", "--url", url, "--token", token, "--json")
    assert code == 0 and [node["id"] for node in json.loads(out)["nodes"]["nodes"]] == ["node-1"]
    monkeypatch.setenv("JOBNODE_TOKEN", token)
    code, out, _ = await run(capsys, "submit", "echo", "--url", url, "--count", "3", "--json")
    assert code == 0 and json.loads(out)["submitted"] == 3


async def test_schedules_add_list_pause_resume_delete(node_url, capsys):
    code, out, _ = await run(capsys, "--url", node_url, "schedules", "add", "nightly", "--cron", "30 2 * * *",
                             "--timezone", "Europe/Berlin", "--type", "echo", "--payload", '{"n": 1}')
    assert code == 0 and out.startswith("created nightly: next fire ")
    code, out, err = await run(capsys, "--url", node_url, "schedules", "add", "bad", "--cron", "99 * * * *",
                               "--type", "echo")
    assert code != 0 and "cron" in err
    code, out, _ = await run(capsys, "--url", node_url, "schedules")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "WHEN", "TIMEZONE", "TYPE", "PAUSED", "NEXT_FIRE_AT", "LAST_FIRE_AT"]
    assert row.split()[:4] == ["nightly", "30", "2", "*"]
    code, out, _ = await run(capsys, "--url", node_url, "schedules", "pause", "nightly")
    assert (code, out) == (0, "nightly: paused\n")
    code, out, _ = await run(capsys, "--url", node_url, "--json", "schedules", "resume", "nightly")
    assert code == 0 and json.loads(out)["paused"] is False
    code, out, _ = await run(capsys, "--url", node_url, "schedules", "delete", "nightly")
    assert (code, out) == (0, "deleted nightly\n")
    code, out, _ = await run(capsys, "--url", node_url, "--json", "schedules", "list")
    assert json.loads(out) == {"schedules": []}
