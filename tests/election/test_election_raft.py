"""Raft regression cases: each pins one rule of the election down."""

from __future__ import annotations

import pytest
from election_wire import Wire, address, of

from jobnode.election import RaftPersistentState
from jobnode.election.messages import RaftAppendEntries, RaftRequestVote, RaftTimeoutNow, RaftVote
from jobnode.election.sim import Simulation

T = 0.3  # RaftConfig's default election timeout


def vote_request(src: str, dst: str, term: int, pre_vote: bool = False) -> RaftRequestVote:
    return RaftRequestVote(src=src, dst=dst, src_address=address(src), dst_address=address(dst), term=term,
                           last_log_index=0, last_log_term=0, pre_vote=pre_vote, transfer=False)


def settled(sim: Simulation) -> tuple[str, int]:
    sim.wait_for_convergence()
    leader = sim.leaders()[sim.live()[0]]
    return leader, sim.machine(leader).term


def test_split_vote_is_resolved_in_a_later_term() -> None:
    wire = Wire("raft", ["n1", "n2", "n3", "n4"])
    wire.start(0.0)
    now = 2 * T  # every randomized timer has fired by now
    wire.tick("n1", now)
    wire.tick("n2", now)
    wire.deliver(now, lambda m: getattr(m, "pre_vote", False))  # pre-votes bind nobody: both pass
    assert wire.nodes["n1"].role == wire.nodes["n2"].role == "candidate"
    wire.deliver(now, of(RaftRequestVote, src="n1", dst="n3"))
    wire.deliver(now, of(RaftRequestVote, src="n2", dst="n4"))
    wire.deliver(now)
    assert wire.nodes["n3"].voted_for == "n1" and wire.nodes["n4"].voted_for == "n2"
    assert all(m.leader is None for m in wire.nodes.values()), "2 of 4 votes is no majority"

    for step in range(1, 200):
        t = now + step * 0.01
        for node_id in wire.nodes:
            wire.tick(node_id, t)
        wire.deliver(t)
    leaders = {m.leader for m in wire.nodes.values()}
    assert len(leaders) == 1 and None not in leaders
    (leader,) = leaders
    assert wire.nodes[leader].role == "leader" and wire.nodes[leader].term >= 2


def test_partitioned_minority_node_cannot_disrupt_the_leader_on_heal() -> None:
    sim = Simulation("raft", 5, seed=3)
    leader, term = settled(sim)
    loner = next(i for i in sim.live() if i != leader)
    sim.partition([loner], [i for i in sim.live() if i != loner])
    sim.run_for(20 * T)
    assert sim.machine(loner).term == term, "PreVote: a node without a majority never raises its term"
    sim.heal()
    sim.run_for(10 * T)
    assert set(sim.leaders().values()) == {leader}
    assert {sim.machine(i).term for i in sim.live()} == {term}


def test_without_prevote_the_same_partition_does_disrupt() -> None:
    # The control for the test above: it would catch PreVote being broken.
    sim = Simulation("raft", 5, seed=3, timers={"pre_vote": False})
    leader, term = settled(sim)
    loner = next(i for i in sim.live() if i != leader)
    sim.partition([loner], [i for i in sim.live() if i != loner])
    sim.run_for(20 * T)
    assert sim.machine(loner).term > term
    sim.heal()
    sim.wait_for_convergence()
    assert sim.machine(sim.leaders()[leader]).term > term, "the old term's leader was deposed"


def test_restart_keeps_term_and_vote_and_never_votes_twice() -> None:
    wire = Wire("raft", ["n1", "n2", "n3"])
    wire.start(0.0)
    out = wire.feed("n3", wire.nodes["n3"].on_message(vote_request("n1", "n3", 1), 0.01))
    assert out.persist == RaftPersistentState(term=1, voted_for="n1")
    assert [m.granted for m in out.messages] == [True]

    wire.crash("n3")
    wire.restart("n3", 0.02)
    n3 = wire.nodes["n3"]
    assert (n3.term, n3.voted_for) == (1, "n1")
    rival = n3.on_message(vote_request("n2", "n3", 1), 0.03)
    assert [m.granted for m in rival.messages] == [False] and rival.persist is None
    again = n3.on_message(vote_request("n1", "n3", 1), 0.04)
    assert [m.granted for m in again.messages] == [True], "re-granting the same candidate is safe"
    later = n3.on_message(vote_request("n2", "n3", 2), 0.05)
    assert [m.granted for m in later.messages] == [True]
    assert later.persist == RaftPersistentState(term=2, voted_for="n2")


def test_persist_comes_with_the_messages_that_depend_on_it() -> None:
    wire = Wire("raft", ["n1", "n2", "n3"])
    wire.start(0.0)
    wire.tick("n1", 2 * T)
    wire.deliver(2 * T, lambda m: m.pre_vote and isinstance(m, RaftRequestVote))
    out = wire.feed("n1", wire.nodes["n1"].on_message(wire.take(of(RaftVote, dst="n1"))[0], 2 * T))
    assert out.persist == RaftPersistentState(term=1, voted_for="n1")
    assert {type(m) for m in out.messages} == {RaftRequestVote} and all(m.term == 1 for m in out.messages)


def test_leader_transfers_leadership_on_leave() -> None:
    sim = Simulation("raft", 5, seed=7)
    leader, term = settled(sim)
    out = sim.machine(leader).leave(sim.now)
    assert [type(m) for m in out.messages] == [RaftTimeoutNow]
    sim = Simulation("raft", 5, seed=7)
    leader, term = settled(sim)
    sim.leave(leader)
    took = sim.wait_for_convergence(bound_s=T / 2, stable_s=0)
    assert took < T / 2, "a transfer must not wait for an election timeout"
    new = sim.leaders()[sim.live()[0]]
    assert new != leader and sim.machine(new).term == term + 1


def test_follower_leave_sends_nothing() -> None:
    sim = Simulation("raft", 3, seed=7)
    leader, _ = settled(sim)
    follower = next(i for i in sim.live() if i != leader)
    out = sim.machine(follower).leave(sim.now)
    assert out.messages == [] and sim.machine(follower).role == "left"
    assert sim.machine(follower).on_tick(sim.now + 10).messages == []


def test_check_quorum_leader_alone_in_a_minority_steps_down() -> None:
    sim = Simulation("raft", 5, seed=11)
    leader, _ = settled(sim)
    rest = [i for i in sim.live() if i != leader]
    sim.partition([leader], rest)
    sim.run_for(T + 2 * sim.config.tick_interval_s)
    assert sim.machine(leader).role == "follower" and sim.machine(leader).leader is None
    sim.run_for(sim.bound_s())
    majority = {sim.machine(i).leader for i in rest}
    assert len(majority) == 1 and None not in majority and leader not in majority


def test_check_quorum_leader_that_cannot_hear_followers_steps_down() -> None:
    sim = Simulation("raft", 3, seed=5)
    leader, _ = settled(sim)
    for follower in sim.live():
        if follower != leader:
            sim.block(follower, leader)  # the leader still reaches them: asymmetric
    sim.run_for(T + 2 * sim.config.tick_interval_s)
    assert sim.machine(leader).role != "leader"


def test_without_check_quorum_an_isolated_leader_keeps_claiming() -> None:
    sim = Simulation("raft", 5, seed=11, timers={"check_quorum": False})
    leader, _ = settled(sim)
    sim.partition([leader], [i for i in sim.live() if i != leader])
    sim.run_for(5 * T)
    assert sim.machine(leader).role == "leader"


def test_stale_leader_steps_down_when_told_of_a_newer_term() -> None:
    wire = Wire("raft", ["n1", "n2", "n3"])
    n1 = wire.nodes["n1"]
    wire.start(0.0)
    wire.tick("n1", 2 * T)
    wire.deliver(2 * T)
    assert n1.role == "leader" and n1.term == 1
    stale = RaftAppendEntries(src="n1", dst="n2", src_address=address("n1"), dst_address=address("n2"), term=1,
                              prev_log_index=0, prev_log_term=0, entries=(), leader_commit=0)
    wire.nodes["n2"].on_message(vote_request("n3", "n2", 5), 100.0)  # n2 moves on to term 5
    reply = wire.nodes["n2"].on_message(stale, 100.0)
    assert [m.term for m in reply.messages] == [5]
    n1.on_message(reply.messages[0], 100.0)
    assert n1.role == "follower" and n1.term == 5


@pytest.mark.parametrize("n, alive, expect_leader", [(1, 1, True), (2, 1, False), (3, 2, True), (4, 2, False)])
def test_a_leader_needs_a_majority(n: int, alive: int, expect_leader: bool) -> None:
    sim = Simulation("raft", n, seed=1, start=False)
    for node_id in list(sim.nodes)[:alive]:
        sim.restart(node_id)
    sim.run_for(10 * T)
    assert any(sim.machine(i).role == "leader" for i in sim.live()) == expect_leader


def heartbeat(src: str, dst: str, term: int) -> RaftAppendEntries:
    return RaftAppendEntries(src=src, dst=dst, src_address=address(src), dst_address=address(dst), term=term,
                             prev_log_index=0, prev_log_term=0, entries=(), leader_commit=0)


def test_a_forged_maximal_term_is_not_adopted_and_the_cluster_keeps_electing() -> None:
    sim = Simulation("raft", 3, seed=11, wire=True)
    leader, term = settled(sim)
    victims = [i for i in sim.live() if i != leader]
    for victim in sim.live():  # one signed heartbeat in a member's name, as in the probe
        sender = victims[0] if victim != victims[0] else victims[1]
        sim.nodes[victim].machine.on_message(heartbeat(sender, victim, 2**63 - 1), sim.now)
    assert all(sim.machine(i).term == term for i in sim.live()), "a term above MAX_TERM is dropped"
    sim.crash(leader)
    new_leader, new_term = settled(sim)
    assert new_leader != leader and term < new_term < term + 10


def test_a_term_far_ahead_moves_a_node_up_by_at_most_the_jump() -> None:
    sim = Simulation("raft", 3, seed=12)
    leader, term = settled(sim)
    follower = next(i for i in sim.live() if i != leader)
    jump = sim.nodes[follower].config.max_term_jump
    out = sim.nodes[follower].machine.on_message(heartbeat(leader, follower, term + 50 * jump), sim.now)
    assert sim.machine(follower).term == term + jump
    assert out.persist is not None and out.persist.term == term + jump
    assert sim.machine(follower).leader is None, "a message that was not adopted names no leader"
    pre_vote = vote_request(leader, follower, term + 50 * jump, pre_vote=True)
    sim.nodes[follower].machine.on_message(pre_vote, sim.now)
    assert sim.machine(follower).term == term + jump, "a pre-vote's proposed term never moves anyone"


def test_a_node_far_behind_catches_up_a_jump_per_message() -> None:
    sim = Simulation("raft", 3, seed=13, start=False)
    ahead = 5 * sim.nodes["n1"].config.max_term_jump + 3
    for node_id in ("n1", "n2"):
        sim.nodes[node_id].disk = RaftPersistentState(ahead, None)
    for node_id in sim.nodes:  # n3 lost its state: term 0
        sim.restart(node_id)
    leader, term = settled(sim)
    assert term > ahead and sim.machine("n3").term == term
