"""One example of every election message, shared by the codec and API tests."""

from __future__ import annotations

from jobnode.election.messages import (
                               BullyAlive,
                               BullyAnswer,
                               BullyCoordinator,
                               BullyElection,
                               BullyLeave,
                               BullyPeer,
                               GossipAck,
                               GossipEntry,
                               GossipLeave,
                               GossipPing,
                               GossipPingReq,
                               GossipSync,
                               RaftAppendEntries,
                               RaftAppendResult,
                               RaftChangeRequest,
                               RaftEntry,
                               RaftRequestVote,
                               RaftTimeoutNow,
                               RaftVote,
)

ENVELOPE = {"src": "node-1", "dst": "node-2",
            "src_address": "https://10.0.0.1:8080", "dst_address": "https://10.0.0.2:8080"}
PEER = BullyPeer("node-3", "https://10.0.0.3:8080", -2, "dead")
ENTRY = GossipEntry("node-3", "https://10.0.0.3:8080", 7, 12, "suspect", 4)
GOSSIP = {"epoch": 3, "updates": (ENTRY, ENTRY)}

SAMPLES = [
    BullyElection(**ENVELOPE, epoch=4, priority=1),
    BullyAnswer(**ENVELOPE, epoch=4, priority=2, roster=(PEER,)),
    BullyCoordinator(**ENVELOPE, epoch=5, priority=2, roster=(PEER,)),
    BullyAlive(**{**ENVELOPE, "dst": ""}, epoch=0, priority=0, roster=(), reply_wanted=True),
    BullyLeave(**ENVELOPE, epoch=5, priority=2),
    RaftRequestVote(**ENVELOPE, term=9, last_log_index=3, last_log_term=2, pre_vote=True, transfer=False),
    RaftVote(**ENVELOPE, term=9, granted=True, pre_vote=False),
    RaftAppendEntries(**ENVELOPE, term=9, prev_log_index=0, prev_log_term=0,
                      entries=(RaftEntry(9, 1, "noop"),), leader_commit=0),
    RaftAppendResult(**ENVELOPE, term=9, success=False, match_index=0),
    RaftTimeoutNow(**ENVELOPE, term=9),
    GossipPing(**ENVELOPE, **GOSSIP, seq=1),
    GossipAck(**ENVELOPE, **GOSSIP, seq=1),
    GossipPingReq(**ENVELOPE, **GOSSIP, seq=2, target="node-3", target_address="https://10.0.0.3:8080"),
    GossipSync(**ENVELOPE, **GOSSIP, reply_wanted=False),
    GossipLeave(**ENVELOPE, **GOSSIP),
    RaftChangeRequest(**{**ENVELOPE, "dst": ""}, term=0, action="add", target="node-1",
                      target_address="https://10.0.0.1:8080"),
]
