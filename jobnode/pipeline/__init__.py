"""The job pipeline: dispatcher, worker pool, outbox writer, reconciler, retention
sweep, retry policy, group commit and local start.

Imports `core`, `storage`, `processors`, `observability` and `cluster` (the dispatcher
acts only while this node holds the lease).
"""
