"""CI's short run of scripts/chaos.py: random faults for 60 s against a `jobnode dev` cluster.

The seed is random on purpose (each CI run draws other faults); it is in the printed JSON,
and `scripts/chaos.py --seed N` replays the same choice of faults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chaos.py"
DURATION_S = 60
RUN_TIMEOUT_S = 280


@pytest.mark.timeout(RUN_TIMEOUT_S + 20)
def test_sixty_seconds_of_random_faults_keep_every_guarantee(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", str(DURATION_S), "--algorithm", "gossip",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    print(run.stderr[-3000:])
    print(run.stdout)
    assert run.stdout.strip(), f"chaos.py printed no report (exit {run.returncode}):\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    assert report["check"]["acknowledged"] > 0
    assert run.returncode == 0 and report["check"]["ok"] and not report["unsettled"], json.dumps(report, indent=1)
    assert all(node["end"] is not None for node in report["rss_mib"].values()), report["rss_mib"]
