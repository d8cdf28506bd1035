"""Which leader a leader change replaces: the one lost, even after a gap with no leader."""

from __future__ import annotations

from jobnode import election
from jobnode.cluster.elector import Elector, LeaderChange
from jobnode.cluster.recorder import change_reason
from jobnode.core.settings import Settings


def elector_recording(changes: list[LeaderChange], tmp_path) -> Elector:
    settings = Settings.from_env({"NODE_ID": "node-3", "DATA_DIR": str(tmp_path)}, env_file=None)
    elector = Elector(settings, transport=None, leadership=None, contact=None)  # type: ignore[arg-type]

    async def record(change: LeaderChange) -> None:
        changes.append(change)

    elector.on_leader_change = record
    return elector


async def test_the_leader_after_a_lost_one_names_it_as_previous(tmp_path):
    changes: list[LeaderChange] = []
    elector = elector_recording(changes, tmp_path)
    await elector._record(election.LeaderChanged("node-1", 1))
    await elector._record(election.LeaderChanged(None, 1))  # node-1 killed: first no leader
    await elector._record(election.LeaderChanged("node-2", 2))
    for task in list(elector._recording):
        await task

    assert [(c.leader, c.previous) for c in changes] == [("node-1", None), (None, "node-1"), ("node-2", "node-1")]
    assert elector.view.leader == "node-2" and elector.view.last_leader == "node-2"


def test_the_recorded_reason_names_the_leader_lost():
    assert change_reason("node-2", "node-1") == "node-1 lost the lead"
    assert change_reason("node-1", "node-1") == "node-1 took the lead again"
    assert change_reason("node-1", None) == "first leader of the cluster"
