"""Observability: Prometheus metrics and their endpoint, structured logs, throughput sampling.

Imports `core` (and `storage` for the queue depths read at scrape time); the parts it
watches (worker pool, elector, leadership) are handed to it as plain callables, so it
never imports the packages above it.
"""
