"""Development tooling reachable from the CLI: `jobnode dev` (a local cluster), the embedded
Redis and SecantusDB servers, and development certificates (`jobnode cert`).

Never imported by `jobnode serve`: a production node does not load it.
"""
