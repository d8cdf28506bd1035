"""Gossip (SWIM) regression cases."""

from __future__ import annotations

from election_wire import Wire, address

from jobnode.election import MemberDown, MemberLeft, MemberSuspect
from jobnode.election.messages import GossipAck, GossipEntry, GossipPing
from jobnode.election.sim import Simulation

S = 1.0  # GossipConfig's default suspicion timeout (election_timeout_s)


def settle(sim: Simulation) -> str:
    sim.wait_for_convergence()
    return sim.leaders()[sim.live()[0]]


def seen(sim: Simulation, event: object, by: str | None = None, after: float = 0.0) -> bool:
    return any(item == event and (by is None or who == by) and t >= after for t, who, item in sim.history)


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    wire = Wire("gossip", ["n1", "n2", "n3"])
    wire.start(0.0)
    wire.deliver(0.0)
    n2 = wire.nodes["n2"]
    before = n2.incarnation
    rumour = GossipEntry("n2", address("n2"), 0, before, "suspect", 0)
    ping = GossipPing(src="n1", dst="n2", src_address=address("n1"), dst_address=address("n2"),
                      epoch=0, updates=(rumour,), seq=7)
    (ack,) = n2.on_message(ping, 0.1).messages
    assert isinstance(ack, GossipAck) and ack.seq == 7
    assert n2.incarnation == before + 1
    own = next(u for u in ack.updates if u.node_id == "n2")
    assert (own.state, own.incarnation) == ("alive", before + 1)
    n1 = wire.nodes["n1"]
    n1.on_message(GossipPing(src="n3", dst="n1", src_address=address("n3"), dst_address=address("n1"),
                             epoch=0, updates=(rumour,), seq=1), 0.1)
    assert n1.members["n2"].state == "suspect"
    n1.on_message(ack, 0.2)
    assert n1.members["n2"].state == "alive" and n1.members["n2"].incarnation == before + 1


def test_false_suspicion_in_a_cluster_is_refuted_before_it_turns_fatal() -> None:
    sim = Simulation("gossip", 3, seed=5, timers={"election_timeout_s": 3.0})
    settle(sim)
    before = sim.machine("n2").incarnation
    for other in ("n1", "n3"):
        sim.block(other, "n2")
        sim.block("n2", other)
    cut_at = sim.now
    sim.run_for(1.2)  # a probe round fails well within the 3 s suspicion timeout
    assert seen(sim, MemberSuspect("n2"), after=cut_at)
    sim.heal()
    settle(sim)
    assert not seen(sim, MemberDown("n2")), "refuted in time: never declared dead"
    incarnation = sim.machine("n2").incarnation
    assert incarnation > before
    for node_id in ("n1", "n3"):
        member = sim.machine(node_id).members["n2"]
        assert (member.state, member.incarnation) == ("alive", incarnation)


def test_join_through_a_seed_at_runtime() -> None:
    sim = Simulation("gossip", 5, seed=3, join_via_seed=True, start=False)
    for node_id in ("n1", "n2", "n3"):
        sim.restart(node_id)
    assert settle(sim) == "n3"
    sim.run_for(2.0)
    sim.restart("n4")  # knows only the seeds' addresses
    sim.restart("n5")
    assert settle(sim) == "n5"
    for node_id in sim.live():
        assert {i for i, m in sim.machine(node_id).members.items() if m.state == "alive"} == set(sim.nodes)


def test_graceful_leave_is_seen_at_once_and_the_next_leader_takes_over() -> None:
    sim = Simulation("gossip", 4, seed=4)
    assert settle(sim) == "n4"
    term = sim.machine("n1").term
    sim.leave("n4")
    took = sim.wait_for_convergence(bound_s=S / 2, stable_s=0)
    assert took < S / 2, "a leave must not wait for failure detection"
    assert sim.leaders()["n1"] == "n3" and sim.machine("n1").term > term
    for node_id in sim.live():
        assert sim.machine(node_id).members["n4"].state == "left"
        assert seen(sim, MemberLeft("n4"), by=node_id)


def test_crashed_leader_is_detected_and_replaced() -> None:
    sim = Simulation("gossip", 5, seed=6)
    assert settle(sim) == "n5"
    crashed_at = sim.now
    sim.crash("n5")
    took = sim.wait_for_convergence(stable_s=0)
    assert took >= S, "dead only after the suspicion timeout"
    assert sim.leaders()["n1"] == "n4"
    for node_id in sim.live():
        assert sim.machine(node_id).members["n5"].state == "dead"
        assert seen(sim, MemberDown("n5"), by=node_id, after=crashed_at)


def test_no_false_suspicion_at_rest() -> None:
    sim = Simulation("gossip", 7, seed=8, delay_s=(0.0005, 0.02))
    settle(sim)
    quiet_from = sim.now
    sim.run_for(30.0)
    assert not any(isinstance(item, MemberSuspect) for t, _, item in sim.history if t >= quiet_from)


def test_a_paused_node_forgives_its_own_stall() -> None:
    # n1 suspects n2, then freezes long past the suspicion timeout. On waking
    # it must not bury n2 on a timer that mostly measured its own pause.
    sim = Simulation("gossip", 2, seed=2)
    settle(sim)
    sim.block("n1", "n2")
    sim.block("n2", "n1")
    while not seen(sim, MemberSuspect("n2"), by="n1"):
        sim.run_for(0.01)
    sim.pause("n1")
    sim.heal()
    sim.run_for(5 * S)
    resumed_at = sim.now
    sim.resume("n1")
    settle(sim)
    assert not seen(sim, MemberDown("n2"), by="n1", after=resumed_at)
    assert sim.machine("n2").members["n1"].state == "alive", "n1 refuted the death n2 declared"
