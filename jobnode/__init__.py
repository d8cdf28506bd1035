"""jobnode: a self-coordinating cluster daemon for distributed job processing.

The package is built in layers. Each subpackage owns one concern and may import only the
packages named beside it in `LAYERS` (and itself); `election`, the pure election state
machines, imports nothing else of jobnode and sits below all of them. tests/test_import_graph.py reads every
import (module level, function level and TYPE_CHECKING alike) and fails on a cycle or on
an import that this table does not allow.

    election       bully, raft and gossip as pure state machines, their codec and simulator
    core           the job record and its codec, typed errors, settings, background tasks
    client         the Python HTTP client (usable without the rest of the package)
    storage        the Redis and MongoDB adapters: key names, scripts, collections, error mapping
    processors     the processor protocol, its registry and the built-in processors
    events         the live event stream as subscribers see it: filters, resume and gap
                   decisions, the per-node hub that fans the Redis stream out
    auth           users, passwords, tokens, roles, peer signatures, TLS
    observability  metrics, the metrics endpoint, logs, throughput
    cluster        the elector driver, peer transport, quorum, leadership, the cluster record
    pipeline       dispatcher, worker pool, outbox writer, reconciler, retention, retry, group commit
    services       what the API may ask of a node: jobs, cluster view, node status
    api            HTTP routes, access control, error mapping, the OpenAPI document
    console        the web console's static files and the route that serves them at /ui/
    wiring         `node` and `assembly`: build one node from its parts and run it
    dev            `jobnode dev`, embedded servers, development certificates
    cli            the `jobnode` command

Dependencies point down the table; nothing under `jobnode/` imports `tools/` (the
benchmark and the chaos driver's helpers).
"""

__version__ = "0.1.0"

# package -> the packages it may import (besides itself and this module's __version__).
LAYERS: dict[str, frozenset[str]] = {
    "election": frozenset(),
    "core": frozenset(),
    "client": frozenset(),
    "storage": frozenset({"core"}),
    "processors": frozenset({"core"}),
    "events": frozenset({"core", "storage"}),
    "auth": frozenset({"core", "storage"}),
    "observability": frozenset({"election", "core", "storage"}),
    "cluster": frozenset({"election", "core", "storage", "auth", "observability"}),
    "pipeline": frozenset({"core", "storage", "processors", "observability", "cluster"}),
    "services": frozenset({"election", "core", "storage", "processors", "events", "auth", "observability", "cluster",
                           "pipeline"}),
    "api": frozenset({"core", "auth", "observability", "services"}),
    "console": frozenset({"core", "auth", "api"}),
    "wiring": frozenset({"election", "core", "storage", "processors", "events", "auth", "observability", "cluster",
                         "pipeline", "services", "api", "console"}),
    "dev": frozenset({"core", "client"}),
    "cli": frozenset({"core", "client", "auth", "observability", "processors", "wiring", "dev"}),
}
# Top-level modules that form a layer of their own.
MODULE_LAYERS = {"node": "wiring", "assembly": "wiring", "client": "client", "__main__": "cli"}
