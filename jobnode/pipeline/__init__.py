"""The job pipeline: dispatcher, worker pool, outbox writer, reconciler, retry policy and group commit.

Imports `core`, `storage`, `processors`, `observability` and `cluster` (the dispatcher
acts only while this node holds the lease).
"""
