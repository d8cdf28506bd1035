"""Raft configuration changes, one server at a time: each test pins one rule down.

The machine is driven directly where a rule is about one step (what a leader sends, what it
persists), and through the seeded simulator where it is about the cluster (a join that
completes, a removed leader that hands over); the simulator checks after every step that no
term has two leaders and that no committed entry is lost or changed.
"""

from __future__ import annotations

import random

import pytest

from jobnode.election import RaftConfig, RaftPersistentState, create
from jobnode.election.messages import RaftAppendEntries, RaftAppendResult, RaftChangeRequest, RaftEntry
from jobnode.election.raft import configuration_data, configuration_of
from jobnode.election.sim import Simulation

T = 0.3  # RaftConfig's default election timeout


def addr(node_id: str) -> str:
    return f"sim://{node_id}"


def solo_leader() -> object:
    """A one-node cluster (no peers, no seeds) that has elected itself and committed its no-op."""
    machine = create("raft", RaftConfig(node_id="n1", address=addr("n1")), random.Random(1))
    machine.start(0.0)
    machine.on_tick(2 * T)
    assert machine.role == "leader" and machine.commit_index == 1
    return machine


def join_request(target: str, term: int = 0, src: str | None = None) -> RaftChangeRequest:
    src = src or target
    return RaftChangeRequest(src=src, dst="n1", src_address=addr(src), dst_address=addr("n1"), term=term,
                             action="add", target=target, target_address=addr(target))


def ack(machine: object, src: str, match_index: int) -> RaftAppendResult:
    return RaftAppendResult(src=src, dst="n1", src_address=addr(src), dst_address=addr("n1"),
                            term=machine.term, success=True, match_index=match_index)


def converged(sim: Simulation) -> str:
    sim.wait_for_convergence()
    return next(i for i in sim.live() if sim.machine(i).role == "leader")


def test_a_new_server_catches_up_as_a_learner_before_it_votes() -> None:
    leader = solo_leader()
    out = leader.on_message(join_request("n2"), 2 * T)
    assert leader.learners == ("n2",) and set(leader.configuration) == {"n1"}
    (append,) = [m for m in out.messages if isinstance(m, RaftAppendEntries)]
    assert append.dst == "n2" and append.prev_log_index == 1, "a learner is probed from the end of the log"

    out = leader.on_message(RaftAppendResult(src="n2", dst="n1", src_address=addr("n2"), dst_address=addr("n1"),
                                             term=leader.term, success=False, match_index=0), 2 * T)
    (resend,) = [m for m in out.messages if isinstance(m, RaftAppendEntries)]
    assert resend.prev_log_index == 0 and len(resend.entries) == 1, "a refused probe backs off to what it holds"

    out = leader.on_message(ack(leader, "n2", 1), 2 * T)
    assert set(leader.configuration) == {"n1", "n2"} and leader.learners == ()
    assert configuration_of(leader.log[-1]) == {"n1": addr("n1"), "n2": addr("n2")}
    assert out.persist is not None and out.persist.log == leader.log, "the entry is on disk before it is sent"
    assert leader.commit_index == 1, "a majority of {n1, n2} is both: not committed until n2 has it"
    leader.on_message(ack(leader, "n2", 2), 2 * T)
    assert leader.commit_index == 2


def test_one_change_at_a_time() -> None:
    leader = solo_leader()
    leader.on_message(join_request("n2"), 2 * T)
    leader.on_message(ack(leader, "n2", 1), 2 * T)
    assert leader.configuration_index == 2 and leader.commit_index == 1
    leader.on_message(join_request("n3"), 2 * T)
    assert leader.learners == (), "no second change while the first is uncommitted"
    leader.on_message(ack(leader, "n2", 2), 2 * T)
    leader.on_message(join_request("n3"), 2 * T)
    assert leader.learners == ("n3",)


def test_a_change_request_never_moves_a_term() -> None:
    leader = solo_leader()
    term = leader.term
    leader.on_message(join_request("n2", term=term + 500), 2 * T)
    assert leader.term == term and leader.role == "leader"


def test_an_unknown_action_is_ignored() -> None:
    leader = solo_leader()
    bad = RaftChangeRequest(src="n2", dst="n1", src_address=addr("n2"), dst_address=addr("n1"), term=0,
                            action="promote", target="n2", target_address=addr("n2"))
    out = leader.on_message(bad, 2 * T)
    assert out.messages == [] and leader.learners == ()


def test_a_joiner_asks_its_seeds_every_election_timeout_until_admitted() -> None:
    joiner = create("raft", RaftConfig(node_id="n9", address=addr("n9"), seeds=(addr("n1"), addr("n2"))),
                    random.Random(2))
    first = joiner.start(0.0)
    asked = [(m.dst_address, m.action, m.target) for m in first.messages if isinstance(m, RaftChangeRequest)]
    assert asked == [(addr("n1"), "add", "n9"), (addr("n2"), "add", "n9")]
    assert joiner.joining and joiner.configuration == {}
    asked_again = 0
    for step in range(1, 41):  # ten election timeouts
        out = joiner.on_tick(step * T / 4)
        assert joiner.role == "follower", "a node outside every configuration never campaigns"
        asked_again += sum(isinstance(m, RaftChangeRequest) for m in out.messages)
    assert 2 * 9 <= asked_again <= 2 * 10


def test_join_through_a_seed_reaches_every_member() -> None:
    sim = Simulation("raft", 3, seed=11)
    converged(sim)
    sim.add_node(["n2"])
    sim.add_node(["n4"])  # through a node that is itself new
    leader = converged(sim)
    config = sim.machine(leader).configuration
    assert set(config) == {"n1", "n2", "n3", "n4", "n5"}
    for node_id in sim.live():
        assert sim.machine(node_id).configuration == config
        assert not sim.machine(node_id).joining


def test_removing_a_follower_commits_and_it_stops_counting() -> None:
    sim = Simulation("raft", 3, seed=12)
    leader = converged(sim)
    victim = next(i for i in sim.live() if i != leader)
    requester = next(i for i in sim.live() if i not in (leader, victim))
    sim.remove_member(requester, victim)
    sim.run_for(5 * T)
    assert set(sim.machine(leader).configuration) == {leader, requester}
    assert sim.machine(victim).departed, "the removed server learns its removal committed"
    term = sim.machine(leader).term
    sim.run_for(20 * T)
    assert sim.machine(victim).term == term, "a removed server does not campaign"
    assert sim.machine(leader).role == "leader"


def test_a_removed_leader_steps_down_after_commit_and_hands_over() -> None:
    sim = Simulation("raft", 3, seed=13)
    leader = converged(sim)
    term = sim.machine(leader).term
    sim.depart(leader, patience_s=10 * T)
    sim.run_for(6 * T)
    assert sim.nodes[leader].status == "left", "it left once its removal committed"
    new = converged(sim)
    assert new != leader and sim.machine(new).term > term
    assert leader not in sim.machine(new).configuration


def test_a_minority_leaders_change_is_lost_and_nothing_committed_is() -> None:
    sim = Simulation("raft", 5, seed=14)
    leader = converged(sim)
    others = [i for i in sim.live() if i != leader]
    sim.partition([leader, others[0]], others[1:])
    sim.remove_member(leader, others[-1])
    sim.run_for(T)
    assert sim.machine(leader).configuration_index > sim.machine(leader).commit_index, "appended, not committed"
    sim.run_for(10 * T)
    sim.heal()
    winner = converged(sim)
    assert winner in others[1:]
    assert others[-1] in sim.machine(winner).configuration, "the uncommitted removal did not survive"
    for node_id in sim.live():
        assert sim.machine(node_id).log[: sim.machine(winner).commit_index] == \
            sim.machine(winner).log[: sim.machine(winner).commit_index]


def test_a_removal_that_leaves_no_live_majority_is_refused() -> None:
    sim = Simulation("raft", 3, seed=15)
    leader = converged(sim)
    down, victim = [i for i in sim.live() if i != leader]
    sim.crash(down)
    sim.run_for(2 * T)  # long enough for the leader to see it gone
    sim.remove_member(leader, victim)
    sim.run_for(4 * T)
    assert set(sim.machine(leader).configuration) == {"n1", "n2", "n3"}, "{leader, down} could commit nothing"
    sim.restart(down)
    sim.run_for(6 * T)
    assert set(sim.machine(leader).configuration) == {leader, down}, "retried once a majority answers"


def test_a_server_removed_while_running_stays_out_and_asks_again_after_a_restart() -> None:
    sim = Simulation("raft", 3, seed=16)
    converged(sim)
    joiner = sim.add_node(["n1"])
    leader = converged(sim)
    sim.remove_member(leader, joiner)
    sim.run_for(20 * T)
    assert joiner not in sim.machine(leader).configuration and not sim.machine(joiner).joining
    sim.crash(joiner)
    sim.restart(joiner)
    sim.wants_member.add(joiner)
    assert converged(sim) and joiner in sim.machine(sim.leaders()[joiner]).configuration


def test_the_first_seed_founds_a_cluster_the_others_wait() -> None:
    seeds = (addr("n1"), addr("n2"))
    founder = create("raft", RaftConfig(node_id="n1", address=addr("n1"), seeds=seeds, found=True), random.Random(4))
    founder.start(0.0)
    founder.on_tick(2 * T)
    assert founder.role == "leader" and founder.configuration == {"n1": addr("n1")}
    waiter = create("raft", RaftConfig(node_id="n2", address=addr("n2"), seeds=seeds), random.Random(4))
    waiter.start(0.0)
    waiter.on_tick(2 * T)
    assert waiter.role == "follower" and waiter.joining


def test_persistent_state_round_trips_its_log_and_names_bad_fields() -> None:
    state = RaftPersistentState(term=3, voted_for="n1", log=(RaftEntry(1, 1, "{}"), RaftEntry(3, 2, "{}")))
    assert RaftPersistentState.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="index 2"):
        RaftPersistentState(term=3, log=(RaftEntry(1, 1, "{}"), RaftEntry(1, 3, "{}")))
    with pytest.raises(ValueError, match="must not decrease nor pass the term"):
        RaftPersistentState(term=1, log=(RaftEntry(2, 1, "{}"),))
    with pytest.raises(ValueError, match="log"):
        RaftPersistentState.from_dict({"term": 1, "log": [{"term": 1}]})
