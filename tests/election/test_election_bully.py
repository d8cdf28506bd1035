"""Bully regression cases."""

from __future__ import annotations

from election_wire import Wire, address

from jobnode.election import LeaderChanged
from jobnode.election.messages import BullyAlive, BullyCoordinator
from jobnode.election.sim import Simulation

E = 1.0  # BullyConfig's default election timeout


def leader_and_epoch(sim: Simulation) -> tuple[str, int]:
    sim.wait_for_convergence()
    leader = sim.leaders()[sim.live()[0]]
    return leader, sim.machine(leader).term


def test_highest_ranked_node_wins_and_priority_beats_id() -> None:
    sim = Simulation("bully", 4, seed=1)
    assert leader_and_epoch(sim)[0] == "n4"
    sim = Simulation("bully", 4, seed=1, priorities=[0, 5, 0, 0])
    assert leader_and_epoch(sim)[0] == "n2"


def test_flapping_highest_node_each_return_and_loss_is_followed() -> None:
    sim = Simulation("bully", 4, seed=2)
    leader, epoch = leader_and_epoch(sim)
    assert leader == "n4"
    for _ in range(5):
        sim.crash("n4")
        leader, newer = leader_and_epoch(sim)
        assert leader == "n3" and newer > epoch
        sim.restart("n4")
        leader, epoch = leader_and_epoch(sim)
        assert leader == "n4" and epoch > newer
    # Every leader change anyone saw moved forward in epoch.
    for node_id in sim.live():
        epochs = [e.term for who, e in _events(sim, node_id) if isinstance(e, LeaderChanged) and e.leader]
        assert epochs == sorted(epochs)


def test_recovered_higher_node_takes_over() -> None:
    sim = Simulation("bully", 3, seed=4, start=False)
    sim.restart("n1")
    sim.restart("n2")
    leader, epoch = leader_and_epoch(sim)
    assert leader == "n2"
    sim.restart("n3")
    leader, newer = leader_and_epoch(sim)
    assert leader == "n3" and newer > epoch


def test_stale_coordinator_is_ignored_and_told_the_new_epoch() -> None:
    wire = Wire("bully", ["n1", "n2", "n3"])
    n1 = wire.nodes["n1"]
    wire.start(0.0)
    for t in (0.3, 0.6, 0.9):
        for node_id in wire.nodes:
            wire.tick(node_id, t)
        wire.deliver(t)
    assert wire.leaders() == {"n1": "n3", "n2": "n3", "n3": "n3"}
    epoch = n1.term
    stale = BullyCoordinator(src="n2", dst="n1", src_address=address("n2"), dst_address=address("n1"),
                             epoch=epoch - 1, priority=0, roster=())
    out = n1.on_message(stale, 1.0)
    assert n1.leader == "n3" and n1.term == epoch
    assert [(type(m), m.dst, m.epoch) for m in out.messages] == [(BullyAlive, "n2", epoch)]


def test_stale_leader_back_from_a_partition_yields_or_bullies_with_a_fresh_epoch() -> None:
    sim = Simulation("bully", 4, seed=6)
    leader, epoch = leader_and_epoch(sim)
    sim.partition(["n4"], ["n1", "n2", "n3"])
    sim.run_for(3 * E)
    majority_epoch = sim.machine("n3").term
    assert sim.machine("n3").leader == "n3" and majority_epoch > epoch
    assert sim.machine("n4").leader == "n4", "split brain inside a partition is expected"
    sim.heal()
    leader, newer = leader_and_epoch(sim)
    assert leader == "n4" and newer > majority_epoch


def test_graceful_leave_triggers_an_election_without_waiting_for_a_timeout() -> None:
    sim = Simulation("bully", 4, seed=8)
    leader_and_epoch(sim)
    sim.leave("n4")
    took = sim.wait_for_convergence(bound_s=E / 2, stable_s=0)
    assert took < E / 2 and sim.leaders()["n1"] == "n3"
    assert sim.machine("n1").members["n4"].state == "left"


def test_nodes_join_at_runtime_through_a_seed() -> None:
    sim = Simulation("bully", 5, seed=9, join_via_seed=True, start=False)
    for node_id in ("n1", "n2", "n3"):
        sim.restart(node_id)
    assert leader_and_epoch(sim)[0] == "n3"
    sim.restart("n4")
    sim.restart("n5")
    assert leader_and_epoch(sim)[0] == "n5"
    for node_id in sim.live():
        members = sim.machine(node_id).members
        assert {i for i, m in members.items() if m.state == "alive"} == set(sim.nodes), node_id
    assert sim.machine("n1").members["n5"].address == "sim://n5"


def test_leader_reports_a_crashed_follower_down() -> None:
    sim = Simulation("bully", 3, seed=10)
    leader_and_epoch(sim)
    sim.crash("n1")
    sim.run_for(3 * E)
    assert sim.machine("n3").members["n1"].state == "dead"
    assert sim.machine("n2").members["n1"].state == "dead", "followers learn it from the leader's roster"


def _events(sim: Simulation, node_id: str) -> list[tuple[str, object]]:
    return [(who, item) for _, who, item in sim.history if who == node_id]
