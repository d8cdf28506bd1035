"""The wire codec: every message round-trips, and garbage never gets past decode."""

from __future__ import annotations

import contextlib
import json
from dataclasses import fields
from typing import Any

import pytest
from election_samples import SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobnode import election
from jobnode.election import DecodeError, decode, encode
from jobnode.election.messages import MESSAGE_TYPES


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES)
    assert len({cls.KIND for cls in MESSAGE_TYPES}) == len(MESSAGE_TYPES)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.KIND)
def test_round_trip_through_json(msg: Any) -> None:
    wire = json.loads(json.dumps(encode(msg)))
    assert wire["kind"] == msg.KIND
    assert decode(wire) == msg


def test_unknown_extra_keys_are_ignored() -> None:
    wire = {**encode(SAMPLES[0]), "added_in_a_later_version": [1, 2]}
    assert decode(wire) == SAMPLES[0]


GARBAGE = [
    (None, "JSON object"),
    ([], "JSON object"),
    ("bully.election", "JSON object"),
    ({}, "kind"),
    ({"kind": "bully.nope"}, "kind"),
    ({"kind": ["raft.vote"]}, "kind"),
]


def broken(index: int, **changes: Any) -> dict[str, Any]:
    wire = encode(SAMPLES[index])
    wire.update(changes)
    return {k: v for k, v in wire.items() if v is not ...}


FIELD_GARBAGE = [
    (broken(0, epoch=...), "missing field 'epoch'"),
    (broken(0, epoch="4"), "bully.election.epoch"),
    (broken(0, epoch=-1), "bully.election.epoch"),
    (broken(0, epoch=4.0), "bully.election.epoch"),
    (broken(0, epoch=True), "bully.election.epoch"),
    (broken(0, epoch=2**70), "bully.election.epoch"),
    (broken(0, src=""), "bully.election.src"),
    (broken(0, src="x" * 300), "bully.election.src"),
    (broken(0, src=None), "bully.election.src"),
    (broken(0, dst_address=""), "bully.election.dst_address"),
    (broken(2, roster={"node_id": "a"}), "bully.coordinator.roster: expected a list"),
    (broken(2, roster=[{"node_id": "a"}]), "roster[0]: missing field 'address'"),
    (broken(2, roster=[["a", "b", 1, "alive"]]), "roster[0]: expected an object"),
    (broken(2, roster=[{**encode(SAMPLES[2])["roster"][0], "state": "zombie"}]), "roster[0].state"),
    (broken(5, pre_vote=1), "raft.request_vote.pre_vote"),
    (broken(5, pre_vote="true"), "raft.request_vote.pre_vote"),
    (broken(7, entries=None), "raft.append_entries.entries"),
    (broken(10, updates=[None]), "gossip.ping.updates[0]"),
    (broken(10, updates=[{}] * 20_000), "gossip.ping.updates"),
]


@pytest.mark.parametrize("data, says", GARBAGE + FIELD_GARBAGE)
def test_garbage_raises_decode_error_that_says_where(data: Any, says: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert says in str(caught.value)


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError):
        encode({"kind": "bully.election"})  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.data())
def test_a_corrupted_field_decodes_or_raises_decode_error(msg: Any, data: st.DataObject) -> None:
    wire = encode(msg)
    key = data.draw(st.sampled_from(sorted(wire)))
    wire[key] = data.draw(json_values)
    try:
        decoded = decode(wire)
    except DecodeError:
        return
    assert type(decoded) in MESSAGE_TYPES


@settings(max_examples=200, deadline=None, database=None)
@given(json_values)
def test_arbitrary_json_decodes_or_raises_decode_error(value: Any) -> None:
    with contextlib.suppress(DecodeError):
        decode(value)


def test_every_field_of_every_message_is_typed_for_the_codec() -> None:
    # A field the codec cannot check would make decode raise TypeError, not DecodeError.
    for msg in SAMPLES:
        for f in fields(msg):
            wire = encode(msg)
            wire[f.name] = {"unexpected": "object"}
            with pytest.raises(DecodeError):
                decode(wire)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(election.DecodeError, ValueError)
