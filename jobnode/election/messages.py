"""Every message the algorithms exchange, as frozen dataclasses.

Each message carries an envelope: who sent it (`src`, `src_address`, so a node
that joined at runtime becomes reachable to whoever hears from it) and where it
goes (`dst`, `dst_address`; `dst` is "" when only a seed's address is known).
The field types below are what `election.codec` checks on the wire, so they
are deliberately narrow: `NodeId` is a non-empty bounded string, `Recipient` a
node id or "", `Count` a non-negative int, `State` one of the member states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

# Plain str/int to type checkers; the tag tells the codec what to enforce.
NodeId = Annotated[str, "node id"]
Recipient = Annotated[str, "node id or empty"]
Address = Annotated[str, "address"]
Count = Annotated[int, "non-negative"]
State = Annotated[str, "member state"]


@dataclass(frozen=True, kw_only=True)
class Message:
    """The envelope shared by all messages."""

    KIND: ClassVar[str] = ""
    src: NodeId
    dst: Recipient
    src_address: Address
    dst_address: Address


# --- bully -------------------------------------------------------------------


@dataclass(frozen=True)
class BullyPeer:
    """One line of a bully roster: who exists and how the sender sees them."""

    node_id: NodeId
    address: Address
    priority: int
    state: State


@dataclass(frozen=True, kw_only=True)
class BullyMessage(Message):
    """Bully envelope: the sender's epoch and priority ride on every message."""

    epoch: Count
    priority: int


@dataclass(frozen=True, kw_only=True)
class BullyElection(BullyMessage):
    """Opens an election; sent to every node that may outrank the sender."""

    KIND: ClassVar[str] = "bully.election"


@dataclass(frozen=True, kw_only=True)
class BullyAnswer(BullyMessage):
    """The reply to an election from a node that outranks its sender and takes over.

    It carries the sender's roster, so a candidate that only knew a few seeds
    learns of the higher nodes (the current leader among them) it must reach.
    """

    KIND: ClassVar[str] = "bully.answer"
    roster: tuple[BullyPeer, ...]


@dataclass(frozen=True, kw_only=True)
class BullyCoordinator(BullyMessage):
    """Claims leadership for `epoch`; sent on winning and again every heartbeat."""

    KIND: ClassVar[str] = "bully.coordinator"
    roster: tuple[BullyPeer, ...]


@dataclass(frozen=True, kw_only=True)
class BullyAlive(BullyMessage):
    """Says the sender is up and whom it knows: a hello at start, or a coordinator's ack."""

    KIND: ClassVar[str] = "bully.alive"
    roster: tuple[BullyPeer, ...]
    reply_wanted: bool


@dataclass(frozen=True, kw_only=True)
class BullyLeave(BullyMessage):
    """Announces a graceful shutdown, so the others elect without waiting for a timeout."""

    KIND: ClassVar[str] = "bully.leave"


# --- raft --------------------------------------------------------------------


@dataclass(frozen=True)
class RaftEntry:
    """A log entry: `data` is a configuration (the full member set) or a no-op, as JSON text."""

    term: Count
    index: Count
    data: str


@dataclass(frozen=True, kw_only=True)
class RaftMessage(Message):
    """Raft envelope: the sender's term."""

    term: Count


@dataclass(frozen=True, kw_only=True)
class RaftRequestVote(RaftMessage):
    """A (pre-)vote request; `term` is the term the candidate would run in."""

    KIND: ClassVar[str] = "raft.request_vote"
    last_log_index: Count
    last_log_term: Count
    pre_vote: bool
    transfer: bool


@dataclass(frozen=True, kw_only=True)
class RaftVote(RaftMessage):
    """The answer to a (pre-)vote request."""

    KIND: ClassVar[str] = "raft.vote"
    granted: bool
    pre_vote: bool


@dataclass(frozen=True, kw_only=True)
class RaftAppendEntries(RaftMessage):
    """Leader heartbeat, shaped as Raft's AppendEntries so replication can follow."""

    KIND: ClassVar[str] = "raft.append_entries"
    prev_log_index: Count
    prev_log_term: Count
    entries: tuple[RaftEntry, ...]
    leader_commit: Count


@dataclass(frozen=True, kw_only=True)
class RaftAppendResult(RaftMessage):
    """A follower's answer to AppendEntries; also how a stale leader learns a newer term."""

    KIND: ClassVar[str] = "raft.append_result"
    success: bool
    match_index: Count


@dataclass(frozen=True, kw_only=True)
class RaftTimeoutNow(RaftMessage):
    """Leadership transfer: tells the chosen successor to start an election at once."""

    KIND: ClassVar[str] = "raft.timeout_now"


@dataclass(frozen=True, kw_only=True)
class RaftChangeRequest(RaftMessage):
    """Asks for one server to be added to or removed from the configuration.

    A joining node sends it about itself to its seeds; a member that is not the leader passes
    it on, in its own name, to the leader it knows. `action` is "add" or "remove". It never
    moves anyone's term: a stranger's term says nothing about the cluster's.
    """

    KIND: ClassVar[str] = "raft.change_request"
    action: str
    target: NodeId
    target_address: Address


# --- gossip ------------------------------------------------------------------


@dataclass(frozen=True)
class GossipEntry:
    """What is known about one member; newer incarnations and graver states win."""

    node_id: NodeId
    address: Address
    priority: int
    incarnation: Count
    state: State
    lead_epoch: Count


@dataclass(frozen=True, kw_only=True)
class GossipMessage(Message):
    """Gossip envelope: the highest leader epoch seen and piggybacked updates."""

    epoch: Count
    updates: tuple[GossipEntry, ...]


@dataclass(frozen=True, kw_only=True)
class GossipPing(GossipMessage):
    """A direct probe; answered by an ack carrying the same `seq`."""

    KIND: ClassVar[str] = "gossip.ping"
    seq: Count


@dataclass(frozen=True, kw_only=True)
class GossipAck(GossipMessage):
    """The answer to a ping, or a relayed answer to a ping-req."""

    KIND: ClassVar[str] = "gossip.ack"
    seq: Count


@dataclass(frozen=True, kw_only=True)
class GossipPingReq(GossipMessage):
    """Asks another member to ping `target` for the sender (an indirect probe)."""

    KIND: ClassVar[str] = "gossip.ping_req"
    seq: Count
    target: NodeId
    target_address: Address


@dataclass(frozen=True, kw_only=True)
class GossipSync(GossipMessage):
    """Full-state exchange (push-pull): joining through a seed and healing split views."""

    KIND: ClassVar[str] = "gossip.sync"
    reply_wanted: bool


@dataclass(frozen=True, kw_only=True)
class GossipLeave(GossipMessage):
    """A graceful departure; the sender's `left` entry is in `updates`."""

    KIND: ClassVar[str] = "gossip.leave"


MESSAGE_TYPES: tuple[type[Message], ...] = (
    BullyElection, BullyAnswer, BullyCoordinator, BullyAlive, BullyLeave,
    RaftRequestVote, RaftVote, RaftAppendEntries, RaftAppendResult, RaftTimeoutNow, RaftChangeRequest,
    GossipPing, GossipAck, GossipPingReq, GossipSync, GossipLeave,
)
