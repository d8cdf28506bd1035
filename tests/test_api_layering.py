"""The API reaches the node only through the services.

tests/test_import_graph.py checks every package against jobnode.LAYERS; these name the
API's part of it, so a route that reaches past the services fails here by name.
"""

from __future__ import annotations

from tests.test_import_graph import GRAPH, MODULES, layer_of

# Below services, the API may use the shared vocabulary (core), auth (principals, roles,
# the authenticator its middleware calls) and observability (the HTTP metrics).
API_MAY_IMPORT = {"api", "core", "auth", "observability", "services"}
NEVER_IN_APP_KEYS = ("jobnode.storage", "jobnode.pipeline", "jobnode.cluster", "jobnode.processors")


def api_modules() -> list[str]:
    return sorted(m for m in MODULES if layer_of(m) == "api")


def test_the_api_package_exists_where_the_check_looks():
    assert "jobnode.api.appkeys" in api_modules() and "jobnode.api.cluster_routes" in api_modules()


def test_the_api_imports_nothing_below_services_but_core_auth_and_observability():
    reached = sorted(f"{module} imports {target}" for module in api_modules() for target in GRAPH[module]
                     if target.startswith("jobnode.") and layer_of(target) not in API_MAY_IMPORT)
    assert not reached, "the API reaches past the services:\n  " + "\n  ".join(reached)


def test_the_app_keys_hold_no_storage_pipeline_cluster_or_processor_type():
    held = sorted(t for t in GRAPH["jobnode.api.appkeys"] if t.startswith(NEVER_IN_APP_KEYS))
    assert not held, held


def test_the_app_keys_are_settings_services_and_what_the_middlewares_need():
    from aiohttp import web

    from jobnode.api import appkeys

    keys = {name for name, value in vars(appkeys).items() if isinstance(value, (web.AppKey, web.RequestKey))}
    assert keys == {"SETTINGS", "TLS", "METRICS", "JOB_SERVICE", "CLUSTER_SERVICE", "SYSTEM_SERVICE",
                    "AUTHENTICATOR", "RATE_LIMITER", "REQUEST_ID", "EVENT_SERVICE", "STREAM_TOKENS", "QUEUE_SERVICE"}
