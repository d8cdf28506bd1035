"""The cluster: the elector driver around `jobnode/election/`, the peer transport, quorum contact,
leadership (keeping the fenced lease while elected) and this node's entry in the cluster record.

Imports `core`, `storage`, `auth` (peer signatures) and `observability`.
"""
