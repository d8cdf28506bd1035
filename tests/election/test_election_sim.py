"""The simulator itself: deterministic, faithful to its faults, loud when a rule breaks."""

from __future__ import annotations

import pytest

from jobnode.election import LeaderChanged
from jobnode.election.sim import LivenessViolation, SafetyViolation, Simulation, main, random_schedule


def test_a_seed_replays_exactly() -> None:
    first = random_schedule("raft", 42)
    again = random_schedule("raft", 42)
    assert first == again
    assert random_schedule("gossip", 42) == random_schedule("gossip", 42)


def test_two_leaders_in_one_term_is_reported_as_safety_with_the_seed() -> None:
    sim = Simulation("raft", 3, seed=77)
    sim.wait_for_convergence()
    leader = sim.leaders()["n1"]
    other = next(i for i in sim.live() if i != leader)
    impostor = sim.machine(other)
    impostor._role, impostor._leader, impostor._term = "leader", other, sim.machine(leader).term
    with pytest.raises(SafetyViolation) as caught:
        sim.run_for(0.1)
    text = str(caught.value)
    assert text.startswith("SAFETY violated: two leaders in term") and "seed=77" in text
    assert "python -m jobnode.election.sim replay raft 77 --n 3" in text


def test_no_leader_in_time_is_reported_as_liveness_with_the_seed() -> None:
    sim = Simulation("raft", 3, seed=78)
    sim.partition(["n1"], ["n2"], ["n3"])
    with pytest.raises(LivenessViolation) as caught:
        sim.wait_for_convergence(bound_s=2.0)
    assert str(caught.value).startswith("LIVENESS violated") and "seed=78" in str(caught.value)


def test_torn_crash_persists_but_sends_nothing() -> None:
    sim = Simulation("raft", 3, seed=5)
    sim.wait_for_convergence()
    follower = next(i for i in sim.live() if sim.machine(i).role != "leader")
    sent_before = sim.messages_sent
    sim.crash(follower, torn=True)
    sim.run_for(0.2)
    assert sim.nodes[follower].status == "crashed"
    assert any(item == "died before sending" for _, who, item in sim.history if who == follower)
    assert sim.messages_sent > sent_before  # the others carried on
    sim.restart(follower)
    assert sim.machine(follower).term == sim.nodes[follower].disk.term


def test_a_paused_node_hears_nothing_then_jumps_ahead() -> None:
    sim = Simulation("raft", 3, seed=6)
    sim.wait_for_convergence()
    leader = sim.leaders()["n1"]
    sim.pause(leader)
    sim.run_for(3.0)
    assert sim.machine(leader).role == "leader", "frozen: it has not noticed anything yet"
    sim.resume(leader)
    sim.run_for(0.1)
    assert sim.machine(leader).role != "leader"
    sim.wait_for_convergence()


def test_history_records_leader_changes_per_node() -> None:
    sim = Simulation("bully", 3, seed=1)
    sim.wait_for_convergence()
    changes = [(who, item) for _, who, item in sim.history if isinstance(item, LeaderChanged)]
    assert {who for who, _ in changes} == {"n1", "n2", "n3"}
    assert all(item.leader == "n3" for _, item in changes[-3:])


def test_command_line_replays_a_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    main(["replay", "bully", "3"])
    out = capsys.readouterr().out
    assert "ScheduleResult(algorithm='bully', seed=3" in out and "LeaderChanged" in out
