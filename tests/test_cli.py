"""The `jobnode` command, run in-process through main() against the local contract peer of test_client."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys

import pytest

from jobnode.cli import submit as submit_command
from jobnode.cli.main import main
from jobnode.cli.output import Progress, format_table
from jobnode.cli.status import watch_status
from jobnode.cli.tokens import load_token
from jobnode.client import AsyncClient
from test_client import TOKEN, USERS, closed_port, server  # noqa: F401  (server is a fixture)


@pytest.fixture(autouse=True)
def isolated_client_env(monkeypatch, tmp_path):
    """No JOBNODE_* variables from the developer's shell, and a private place for stored tokens."""
    for name in ("JOBNODE_URL", "JOBNODE_TOKEN", "JOBNODE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def column_starts(header: str) -> dict[str, int]:
    return {m.group(): m.start() for m in re.finditer(r"\S+", header)}


# ---- submit ---------------------------------------------------------------------------------


def test_submit_one_job_prints_its_id_and_status(server, capsys):
    code, out, _ = run(capsys, "--url", server.url, "submit", "echo", "--payload", '{"n": 1}', "--priority", "high",
                       "--max-retries", "2", "--timeout", "1.5", "--at", "2030-01-01T00:00:00Z", "--key", "k1")
    assert code == 0
    job_id, status = out.rstrip("\n").split(": ")
    assert job_id in server.jobs and server.jobs[job_id]["payload"] == {"n": 1} and status == "pending"
    assert server.seen[-1].body == {
        "type": "echo", "payload": {"n": 1}, "priority": "high", "max_retries": 2, "timeout_seconds": 1.5,
        "scheduled_at": "2030-01-01T00:00:00Z", "idempotency_key": "k1",
    }


def test_json_mode_prints_one_line_and_options_may_follow_the_command(server, capsys):
    code, out, _ = run(capsys, "submit", "echo", "--priority", "3", "--url", server.url, "--json")
    assert code == 0 and out.count("\n") == 1
    assert json.loads(out)["priority"] == 3


def test_submit_payload_from_a_file(server, capsys, tmp_path):
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"to": "someone"}')
    code, out, _ = run(capsys, "--url", server.url, "--json", "submit", "echo", "--payload-file", str(payload_file))
    assert code == 0 and json.loads(out)["payload"] == {"to": "someone"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--payload", "{nope"], "--payload is not valid JSON"),
        (["--payload", "[1, 2]"], "--payload must be a JSON object"),
        (["--payload-file", "/nonexistent/payload.json"], "cannot read it"),
    ],
)
def test_a_bad_payload_is_a_usage_error(server, capsys, arguments, message):
    code, _, err = run(capsys, "--url", server.url, "submit", "echo", *arguments)
    assert code == 2 and message in err
    assert server.seen == []


def test_a_refused_submit_prints_code_message_and_details(server, capsys):
    code, out, err = run(capsys, "--url", server.url, "submit", "nope")
    assert code == 1 and out == ""
    assert "error: validation_error: type: unknown job type 'nope'" in err
    assert '"registered_types": ["echo", "fail", "never"]' in err


def test_submit_count_batches_with_progress_and_a_throughput_line(server, capsys, monkeypatch):
    monkeypatch.setattr(submit_command, "BATCH_CHUNK", 3)
    code, out, err = run(capsys, "--url", server.url, "submit", "echo", "--count", "7", "--concurrency", "2")
    assert code == 0
    assert re.fullmatch(r"submitted 7 jobs in \d+\.\d\ds \(\d+\.\d jobs/s\)\n", out)
    assert server.count("POST", "/api/v1/jobs/batch") == 3 and len(server.jobs) == 7
    assert "submitting: 7/7 (100%)" in err  # not a terminal: plain progress lines


def test_submit_count_without_batching_keys_each_job(server, capsys):
    code, out, _ = run(capsys, "--url", server.url, "--json", "submit", "echo", "--count", "5", "--no-batch",
                       "--key", "run1")
    assert code == 0
    summary = json.loads(out)
    assert summary["submitted"] == 5 and sorted(summary["ids"]) == sorted(server.jobs)
    assert server.count("POST", "/api/v1/jobs") == 5
    assert sorted(s.body["idempotency_key"] for s in server.seen) == [f"run1-{i}" for i in range(5)]


def test_submit_count_keys_every_job_so_a_failed_batch_is_resent_without_duplicates(server, capsys, monkeypatch):
    monkeypatch.setattr(submit_command, "BATCH_CHUNK", 3)
    server.fail_next("POST", "/api/v1/jobs/batch", 503)
    code, out, _ = run(capsys, "--url", server.url, "--json", "submit", "echo", "--count", "7")
    summary = json.loads(out)
    assert code == 0 and summary["submitted"] == 7 and len(server.jobs) == 7
    assert server.count("POST", "/api/v1/jobs/batch") == 4  # three batches, one of them sent twice
    keys = sorted(job["idempotency_key"] for job in server.jobs.values())
    assert re.fullmatch(r"cli-[0-9a-f]{12}", summary["key"])
    assert keys == sorted(f"{summary['key']}-{i}" for i in range(7))


def test_submit_count_reports_how_far_it_got_when_the_server_fails(server, capsys, monkeypatch):
    monkeypatch.setattr(submit_command, "BATCH_CHUNK", 2)
    server.fail_next("POST", "/api/v1/jobs/batch", 400, body={"code": "too_bad", "message": "no more"})
    code, _, err = run(capsys, "--url", server.url, "submit", "echo", "--count", "6", "--concurrency", "1")
    assert code == 1
    assert "submitted 0 of 6 jobs before the error" in err and "error: too_bad: no more" in err
    assert re.search(r"run the same command with --key cli-[0-9a-f]{12}$", err, re.M)


def test_submit_wait_reports_completed_and_failed_counts(server, capsys):
    code, out, _ = run(capsys, "--url", server.url, "submit", "echo", "--count", "4", "--wait",
                       "--payload", '{"reads": 2}')
    assert code == 0
    assert re.search(r"finished 4 jobs in \d+\.\d\ds .*: completed 4, failed 0, cancelled 0", out)
    code, out, _ = run(capsys, "--url", server.url, "submit", "fail", "--count", "3", "--wait")
    assert code == 1 and "completed 0, failed 3, cancelled 0" in out


def test_submit_one_and_wait_prints_the_finished_job(server, capsys):
    code, out, _ = run(capsys, "--url", server.url, "submit", "echo", "--wait")
    assert code == 0 and re.search(r"^status +completed$", out, re.M) and re.search(r"^id +\S+$", out, re.M)
    code, _, err = run(capsys, "--url", server.url, "submit", "never", "--wait", "--wait-timeout", "0.2")
    assert code == 1 and "still pending after 0.2s" in err


# ---- jobs -----------------------------------------------------------------------------------


def test_jobs_lists_an_aligned_table(server, capsys):
    server.add_job("echo", priority=10)
    server.add_job("never", status="running")
    code, out, _ = run(capsys, "--url", server.url, "jobs")
    assert code == 0
    header, *rows = out.splitlines()
    starts = column_starts(header)
    assert list(starts) == ["ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "CREATED_AT"]
    listed = list(reversed(server.jobs.values()))
    assert len(rows) == 2
    for row, job in zip(rows, listed):
        assert row[starts["ID"]:].startswith(job["id"])
        assert row[starts["TYPE"]:].startswith(job["type"])
        assert row[starts["STATUS"]:].startswith(job["status"])
        assert row[starts["CREATED_AT"]:] == job["created_at"]
        # numbers are right-aligned under their header
        priority_end = starts["PRIORITY"] + len("PRIORITY")
        assert row[:priority_end].endswith(f" {job['priority']}")


def test_jobs_filters_and_json_output(server, capsys):
    server.add_job("echo")
    wanted = server.add_job("never", status="running")
    code, out, _ = run(capsys, "--url", server.url, "--json", "jobs", "--status", "running", "--limit", "5")
    assert code == 0
    assert [job["id"] for job in json.loads(out)["jobs"]] == [wanted["id"]]
    assert server.seen[-1].raw_path == "/api/v1/jobs?status=running&limit=5"


def test_jobs_tells_how_to_get_the_next_page(server, capsys):
    for _ in range(3):
        server.add_job()
    code, out, err = run(capsys, "--url", server.url, "jobs", "list", "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3
    assert "more jobs: add --cursor 2" in err


def test_jobs_get_cancel_retry_delete(server, capsys):
    job, failed = server.add_job("never"), server.add_job("fail", status="failed")
    code, out, _ = run(capsys, "--url", server.url, "jobs", "get", job["id"])
    assert code == 0 and [line.split() for line in out.splitlines()[:3]] == [
        ["id", job["id"]], ["type", "never"], ["status", "pending"]]
    code, out, _ = run(capsys, "--url", server.url, "--json", "jobs", "get", job["id"])
    assert code == 0 and json.loads(out)["id"] == job["id"] and out.count("\n") == 1
    code, out, _ = run(capsys, "--url", server.url, "jobs", "cancel", job["id"])
    assert (code, out) == (0, f"{job['id']}: cancelled\n")
    code, out, _ = run(capsys, "--url", server.url, "jobs", "retry", failed["id"])
    assert (code, out) == (0, f"{failed['id']}: pending\n")
    code, out, _ = run(capsys, "--url", server.url, "jobs", "delete", job["id"])
    assert (code, out) == (0, f"deleted {job['id']}\n") and job["id"] not in server.jobs


def test_job_errors_print_the_server_code_and_exit_1(server, capsys):
    done = server.add_job(status="completed")
    code, _, err = run(capsys, "--url", server.url, "jobs", "retry", done["id"])
    assert code == 1 and err.startswith("error: conflict: only failed jobs can be retried")
    code, _, err = run(capsys, "--url", server.url, "jobs", "get", "missing")
    assert code == 1 and "error: not_found: no such job" in err


# ---- status ---------------------------------------------------------------------------------


def test_status_shows_summary_nodes_and_queue(server, capsys):
    server.add_job("never")
    code, out, _ = run(capsys, "--url", server.url, "status")
    assert code == 0
    summary, nodes, jobs, queue = out.strip().split("\n\n")
    assert re.search(r"^node +node-a \(leader\)$", summary, re.M) and re.search(r"^term +7$", summary, re.M)
    header, *rows = nodes.splitlines()
    starts = column_starts(header)
    assert [row[starts["ROLE"]:].split()[0] for row in rows] == ["leader", "follower"]
    assert all(row[starts["ADDRESS"]:].startswith("http://127.0.0.1:") for row in rows)
    jobs_header, jobs_row = jobs.splitlines()
    assert jobs_header.split() == ["JOBS", "PENDING", "ASSIGNED", "RUNNING", "RETRYING", "COMPLETED", "FAILED",
                                   "CANCELLED", "TOTAL"]
    assert jobs_row.split() == ["1", "0", "0", "0", "0", "0", "0", "1"]
    assert queue.splitlines()[0].split()[0] == "QUEUE"


def test_status_without_a_nodes_route_shows_what_there_is(server, capsys):
    server.nodes_route = False
    code, out, _ = run(capsys, "--url", server.url, "status")
    assert code == 0
    assert len(out.strip().split("\n\n")) == 3 and "node-bb" not in out
    code, out, _ = run(capsys, "--url", server.url, "--json", "status")
    assert json.loads(out)["nodes"] is None


async def test_watch_keeps_going_through_errors(server, capsys):
    server.fail_next("GET", "/api/v1/stats", 503, times=1)
    async with AsyncClient(server.url, max_attempts=1) as client:
        await watch_status(client, 0.01, iterations=2)
    out = capsys.readouterr().out
    first, second = out.split(server.url)[1:]
    assert "error: code_503: canned 503" in first
    assert "node-a (leader)" in second


# ---- login and tokens -----------------------------------------------------------------------


def test_login_stores_a_private_token_used_by_later_commands(server, capsys, monkeypatch, tmp_path):
    server.auth_required = True
    code, _, err = run(capsys, "--url", server.url, "jobs")
    assert code == 1 and "error: unauthorized" in err and "jobnode login" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(USERS["alice"] + "\n"))
    code, out, _ = run(capsys, "--url", server.url, "login", "--username", "alice", "--password-stdin")
    assert code == 0 and "logged in" in out
    token_file = tmp_path / "config" / "jobnode" / "token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert TOKEN not in out
    code, _, _ = run(capsys, "--url", server.url, "jobs")
    assert code == 0 and server.seen[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert load_token("http://elsewhere:8080") is None  # never sent to another URL


def test_login_with_a_wrong_password_fails_cleanly(server, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO("wrong\n"))
    code, _, err = run(capsys, "--url", server.url, "login", "--username", "alice", "--password-stdin")
    assert code == 1 and "error: unauthorized: wrong username or password" in err
    assert not (tmp_path / "config" / "jobnode" / "token.json").exists()


def test_url_and_token_come_from_the_environment(server, capsys, monkeypatch):
    server.auth_required = True
    monkeypatch.setenv("JOBNODE_URL", server.url)
    monkeypatch.setenv("JOBNODE_TOKEN", TOKEN)
    code, _, _ = run(capsys, "jobs")
    assert code == 0 and server.count("GET", "/api/v1/jobs") == 1


# ---- failures and usage ---------------------------------------------------------------------


def test_connection_refused_explains_url(capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = run(capsys, "--url", url, "status")
    assert code == 1 and out == ""
    assert "Connection refused" in err and "--url" in err


@pytest.mark.parametrize(
    "argv",
    [["jobs", "--limit", "0"], ["submit"], ["frobnicate"], [], ["status", "--watch", "-1"], ["jobs", "--bogus"]],
)
def test_usage_errors_exit_2(capsys, argv):
    code, _, _ = run(capsys, *argv)
    assert code == 2


def test_a_missing_ca_file_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "--url", "https://127.0.0.1:1", "--ca-file", str(tmp_path / "none.pem"), "status")
    assert code == 2 and f"--ca-file {tmp_path / 'none.pem'}: not a readable PEM CA bundle" in err


def test_version_and_help_texts(capsys):
    from jobnode import __version__

    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"jobnode {__version__}\n")
    for argv, options in ((["submit", "--help"], ("--max-retries", "--wait-timeout")),
                          (["jobs", "--help"], ("--status", "--type"))):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        for option in options:
            # every option says what it does: its help text follows it on the same line or the next
            described = re.search(rf"^  {option}\b[^\n]*?(\S  +\w|\n {{20,}}\w)", out, re.M)
            assert described, f"{option} has no help text:\n{out}"


def test_serve_help_lists_the_environment_variables(capsys):
    from jobnode.core.settings import VARIABLES

    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0 and "docs/configuration.md" in out
    assert all(variable.name in out for variable in VARIABLES)


def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that already exited: every write now fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "jobnode", "cert", "--out", str(tmp_path), "--nodes", "a,b"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


def test_the_benchmark_names_itself_as_it_is_run(capsys):
    from tools.bench import main as bench_main

    with pytest.raises(SystemExit):
        bench_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: scripts/bench.py")


def test_serve_with_a_bad_setting_exits_2_naming_it(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("SERVER_PORT", "abc")
    code, out, err = run(capsys, "serve")
    assert code == 2 and out == ""
    assert err.startswith("jobnode: configuration error:") and "SERVER_PORT" in err and "abc" in err


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "jobnode", "--url", f"http://127.0.0.1:{closed_port()}", "jobs", "get", "x"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_CONFIG_HOME": "/nonexistent"},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and "--url" in done.stderr


# ---- output helpers -------------------------------------------------------------------------


def test_format_table_pads_columns_and_right_aligns_numbers():
    text = format_table(["name", "n"], [["a", 5], ["longer", 12], ["b", None]])
    assert text.splitlines() == ["NAME     N", "a        5", "longer  12", "b        -"]


class TerminalBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal():
    stream = TerminalBuffer()
    progress = Progress("submitting", 10, stream=stream)
    progress.update(10)
    progress.finish()
    text = stream.getvalue()
    assert text.startswith("\rsubmitting [##############################] 10/10 100%") and text.endswith("\n")


def test_status_counts_no_workers_of_a_down_node():
    from jobnode.cli.status_screen import StatusSnapshot, render_status

    nodes = {"nodes": [
        {"id": "node-1", "is_leader": True, "health": "healthy", "worker_count": 4, "workers_busy": 1},
        {"id": "node-2", "is_leader": False, "health": "healthy", "worker_count": 4, "workers_busy": 0},
        # killed: its last heartbeat said 4 workers, none busy
        {"id": "node-3", "is_leader": False, "health": "down", "worker_count": 4, "workers_busy": 0},
    ]}
    stats = {"node": {"id": "node-1", "is_leader": True, "worker_count": 4, "workers_busy": 1}}
    screen = render_status(StatusSnapshot("http://127.0.0.1:8080", stats, nodes=nodes))
    assert re.search(r"^workers +1 busy of 8 \(1 down node not counted\)$", screen, re.M), screen
    node_3 = next(line for line in screen.splitlines() if line.startswith("node-3"))
    assert node_3.split()[:6] == ["node-3", "follower", "down", "-", "4", "-"]  # no busy figure
