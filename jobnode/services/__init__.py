"""Services: what the API may ask of a node. Routes call these and nothing below them.

`jobs` submits, reads and steers jobs; `cluster` answers who leads and which nodes are
up, and takes in peers' election messages; `system` reports the node's health, workers
and stats; `rate_limiter` is the per-client budget the API's middleware spends from.
"""
