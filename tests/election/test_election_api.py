"""The package surface the daemon relies on: create, configs, describe, rank_key, purity."""

from __future__ import annotations

import ast
import dataclasses
import random
from pathlib import Path

import pytest
from election_samples import SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from jobnode import election
from jobnode.election import BullyConfig, GossipConfig, RaftConfig, RaftPersistentState, rank_key
from jobnode.election.config import field_names

PACKAGE = Path(election.__file__).parent
CONFIGS = {"bully": BullyConfig, "raft": RaftConfig, "gossip": GossipConfig}


def make(name: str, **fields: object) -> object:
    return CONFIGS[name](**{"node_id": "node-1", "address": "http://a", **fields})


# --- rank order -------------------------------------------------------------------


def test_rank_is_priority_first_then_natural_node_id_order() -> None:
    assert rank_key(0, "node-10") > rank_key(0, "node-9")
    assert rank_key(0, "node-2") > rank_key(0, "node-1")
    assert rank_key(1, "a") > rank_key(0, "z")
    assert rank_key(-1, "node-99") < rank_key(0, "node-1")
    assert rank_key(0, "b") > rank_key(0, "a10")
    assert rank_key(0, "01") != rank_key(0, "1")


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.text(min_size=1, max_size=8)), unique=True, min_size=2))
def test_rank_is_a_total_order_over_distinct_nodes(nodes: list[tuple[int, str]]) -> None:
    keys = [rank_key(p, i) for p, i in nodes]
    assert len(set(keys)) == len(keys)
    ordered = sorted(keys)  # raises TypeError if two keys could not be compared
    assert ordered == sorted(ordered, reverse=True)[::-1]


# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize("name", election.ALGORITHM_NAMES)
@pytest.mark.parametrize("field, value", [
    ("node_id", ""), ("node_id", 7), ("address", ""), ("priority", "high"), ("priority", 1.5),
    ("election_timeout_s", 0), ("election_timeout_s", -1.0), ("election_timeout_s", float("nan")),
    ("heartbeat_interval_s", 5.0), ("peers", ["node-2"]), ("peers", {"node-2": ""}),
])
def test_bad_settings_raise_value_error_naming_the_field(name: str, field: str, value: object) -> None:
    with pytest.raises(ValueError) as caught:
        make(name, **{field: value})
    assert str(caught.value).startswith(field)


@pytest.mark.parametrize("name, field, value", [
    ("bully", "answer_timeout_s", 2.0), ("bully", "seeds", "http://b"), ("raft", "pre_vote", "yes"),
    ("gossip", "ping_timeout_s", 0.5), ("gossip", "ping_req_fanout", -1), ("gossip", "retransmit_mult", 0),
    ("gossip", "sync_interval_s", 0.0), ("gossip", "max_piggyback", 0),
])
def test_algorithm_specific_settings_are_checked(name: str, field: str, value: object) -> None:
    with pytest.raises(ValueError) as caught:
        make(name, **{field: value})
    assert str(caught.value).startswith(field)


def test_peers_may_list_this_node_and_derived_defaults_are_filled() -> None:
    config = make("gossip", peers={"node-1": "http://a", "node-2": "http://b"}, seeds=("http://a", "http://c"))
    assert dict(config.peers) == {"node-2": "http://b"}
    assert config.seeds == ("http://c",)
    assert config.ping_timeout_s == config.heartbeat_interval_s / 2
    assert config.sync_interval_s == 10 * config.heartbeat_interval_s
    assert make("bully").answer_timeout_s == 0.25


@pytest.mark.parametrize("name", election.ALGORITHM_NAMES)
def test_tick_interval_is_between_5_and_50_ms_and_below_every_timer(name: str) -> None:
    config = make(name)
    assert 0.005 <= config.tick_interval_s <= 0.05
    assert config.tick_interval_s < config.heartbeat_interval_s


# --- create ---------------------------------------------------------------------------


def test_create_checks_its_arguments() -> None:
    rng = random.Random(1)
    with pytest.raises(ValueError, match="unknown election algorithm"):
        election.create("paxos", make("raft"), rng)
    with pytest.raises(TypeError, match="RaftConfig"):
        election.create("raft", make("bully"), rng)
    with pytest.raises(TypeError, match=r"random\.Random"):
        election.create("raft", make("raft"), 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="persisted"):
        election.create("bully", make("bully"), rng, RaftPersistentState(1, None))


@pytest.mark.parametrize("name", election.ALGORITHM_NAMES)
def test_a_new_machine_reports_itself(name: str) -> None:
    machine = election.create(name, make(name, priority=3), random.Random(1))
    out = machine.start(0.0)
    assert machine.node_id == "node-1"
    assert machine.term == (1 if name == "gossip" else 0), "a gossip node with no contacts leads at once"
    assert election.MemberUp("node-1", "http://a") in out.events
    me = machine.members["node-1"]
    assert (me.address, me.state, me.priority) == ("http://a", "alive", 3)


@pytest.mark.parametrize("name", election.ALGORITHM_NAMES)
def test_a_lone_node_leads_and_time_going_backwards_is_harmless(name: str) -> None:
    machine = election.create(name, make(name), random.Random(1))
    events = machine.start(100.0).events
    for step in range(1, 200):
        events += machine.on_tick(100.0 + step * 0.05).events
    machine.on_tick(5.0)  # a clock that jumps back must not confuse the timers
    assert machine.leader == "node-1" and machine.role == "leader" and machine.term >= 1
    assert election.LeaderChanged("node-1", machine.term) in events


@pytest.mark.parametrize("name", election.ALGORITHM_NAMES)
def test_messages_for_another_node_or_algorithm_are_ignored(name: str) -> None:
    peers = {"node-1": "http://a", "node-2": "http://b"}
    machine = election.create(name, make(name, node_id="node-5", peers=peers), random.Random(1))
    machine.start(0.0)
    for msg in SAMPLES:
        if msg.dst:
            assert machine.on_message(msg, 0.1).messages == [], f"{msg.KIND} is for node-2"
        if not msg.KIND.startswith(name):
            readdressed = dataclasses.replace(msg, dst="node-5")
            assert machine.on_message(readdressed, 0.1).messages == [], f"{msg.KIND} is not {name}"


def test_persistent_state_round_trips_and_rejects_garbage() -> None:
    state = RaftPersistentState(7, "node-3")
    assert RaftPersistentState.from_dict(state.to_dict()) == state
    assert RaftPersistentState.from_dict({"term": 0, "voted_for": None}) == RaftPersistentState()
    for bad in ([], {"term": -1}, {"term": "7"}, {"term": 1, "voted_for": 5}, {"term": True}):
        with pytest.raises(ValueError):
            RaftPersistentState.from_dict(bad)


# --- describe -------------------------------------------------------------------------


@pytest.mark.parametrize("name", election.ALGORITHM_NAMES)
def test_describe_comes_from_the_module_header_and_covers_every_setting(name: str) -> None:
    d = election.describe(name)
    assert d["name"] == name
    assert set(d) >= {"name", "summary", "guarantees", "failure_modes", "best_for", "parameters"}
    assert d["summary"] and d["how_it_works"] and d["best_for"]
    assert len(d["guarantees"]) >= 2 and len(d["failure_modes"]) >= 2
    assert set(d["parameters"]) == set(field_names(CONFIGS[name]))
    assert all(meaning.strip() for meaning in d["parameters"].values())
    assert election.describe_all()[name] == d


def test_describe_rejects_unknown_names() -> None:
    with pytest.raises(ValueError):
        election.describe("paxos")


# --- purity ---------------------------------------------------------------------------

FORBIDDEN_MODULES = {"asyncio", "socket", "time", "threading", "os", "subprocess", "selectors", "jobnode"}
FORBIDDEN_CALLS = {"random", "randint", "uniform", "choice", "shuffle", "sample", "seed", "time", "monotonic"}


@pytest.mark.parametrize("path", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_the_package_does_no_io_and_reads_no_clock(path: str) -> None:
    tree = ast.parse((PACKAGE / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {module.split(".")[0]} if node.level == 0 and not module.startswith("jobnode.election") else set()
            if node.module == "random":
                names |= {a.name for a in node.names} & FORBIDDEN_CALLS
        else:
            continue
        assert not names & FORBIDDEN_MODULES, f"{path} imports {names & FORBIDDEN_MODULES}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("jobnode"):
            # Its own modules only: the rest of jobnode does I/O.
            assert (node.module or "").startswith("jobnode.election"), f"{path} imports {node.module}"
    for node in ast.walk(tree):
        # `random.choice(...)` would use the hidden global generator.
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            assert node.attr not in FORBIDDEN_CALLS, f"{path} calls random.{node.attr}"
