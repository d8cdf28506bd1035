"""scripts/test-mongodb.sh against the session's SecantusDB, and against nothing at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_client import closed_port

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-mongodb.sh"


def check_mongodb(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MONGODB_")}
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**environ, "PROBE_TIMEOUT": "2s", **env},
    )


async def test_a_reachable_server_reports_version_round_trip_and_a_cleaned_up_probe(
    mongo_server, mongo_db, mongo_db_name, tmp_path
):
    done = check_mongodb(cwd=tmp_path, MONGODB_URI=mongo_server.url, MONGODB_DATABASE=mongo_db_name)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["ping"].startswith("ok, round trip") and " ms median" in lines["ping"]
    assert lines["version"][0].isdigit()
    assert "journaled" in lines["probe"] and done.stdout.rstrip().endswith("OK")
    assert await mongo_db["jobnode_connectivity_probe"].count_documents({}) == 0


async def test_the_uri_may_come_from_a_dot_env_file(mongo_server, mongo_db, mongo_db_name, tmp_path):
    (tmp_path / ".env").write_text(f"MONGODB_URI={mongo_server.url}\nMONGODB_DATABASE={mongo_db_name}\n")
    done = check_mongodb(cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert mongo_server.url in done.stdout


def test_an_unreachable_server_fails_with_a_clear_message_and_no_password(tmp_path):
    uri = f"mongodb://probe:hunter2-secret@127.0.0.1:{closed_port()}/"
    done = check_mongodb(uri, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("FAIL: cannot reach MongoDB at mongodb://probe:***@127.0.0.1:")
    assert "within 2s" in done.stderr and "Connection refused" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr


@pytest.mark.parametrize("argv", [["not-a-uri"], ["a", "b"]])
def test_usage_errors_exit_2(argv, tmp_path):
    done = check_mongodb(*argv, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr
