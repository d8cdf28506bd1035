"""The http processor's destination policy: refusals decided after DNS, on every hop, against loopback servers.

Only loopback addresses are ever dialled here. Private, link-local and other ranges are tested
through the policy's decision alone, never by connecting.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from jobnode.core.job import Job, JobSpec
from jobnode.core.settings import ConfigError, Settings
from jobnode.processors.destinations import DestinationPolicy
from jobnode.processors.registry import PermanentError, RetryableError
from jobnode.processors.webhook import HttpProcessor
from tests.auth_fixtures import auth_env, bearer, token_for
from tests.harness import start_node  # noqa: F401  (fixture)

REFUSED_BY_DEFAULT = [
    "127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "2002:7f00:1::1",
    "64:ff9b::a00:1", "64:ff9b::7f00:1", "fe80::1%eth0", "not-an-address",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED_BY_DEFAULT)
def test_internal_addresses_are_refused_by_default(address):
    assert not DestinationPolicy().allows(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed_by_default(address):
    assert DestinationPolicy().allows(address)


def test_allow_opens_a_network_and_deny_wins_over_it():
    policy = DestinationPolicy(allow=["10.1.0.0/16", "127.0.0.1"], deny=["10.1.2.0/24", "8.8.8.8"])
    assert policy.allows("10.1.0.5") and policy.allows("127.0.0.1") and policy.allows("::ffff:127.0.0.1")
    assert not policy.allows("10.1.2.3") and not policy.allows("::ffff:10.1.2.3")
    assert not policy.allows("127.0.0.2") and not policy.allows("10.2.0.1")
    assert not policy.allows("8.8.8.8") and not policy.allows("::ffff:8.8.8.8")


def test_the_lists_are_settings_with_clear_errors():
    settings = Settings.from_env({"HTTP_PROCESSOR_ALLOW": "10.0.0.0/8, 127.0.0.1", "HTTP_PROCESSOR_DENY": "fd00::/8"},
                                 env_file=None)
    assert settings.http_processor_allow == ("10.0.0.0/8", "127.0.0.1/32")
    assert settings.http_processor_deny == ("fd00::/8",)
    with pytest.raises(ConfigError, match="HTTP_PROCESSOR_ALLOW.*'10.0.0.300' is not an IP address"):
        Settings.from_env({"HTTP_PROCESSOR_ALLOW": "10.0.0.300"}, env_file=None)
    assert Settings.from_env({}, env_file=None).job_type_roles == {"http": "admin"}
    with pytest.raises(ConfigError, match="JOB_TYPE_ROLES"):
        Settings.from_env({"JOB_TYPE_ROLES": "http=worker"}, env_file=None)


# --- against loopback servers -------------------------------------------------------------------


class HostsResolver(AbstractResolver):
    """A hosts file for the test: names resolve to the loopback addresses given, nothing else."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host not in self.hosts:
            raise OSError(f"no such host {host}")
        return [{"hostname": host, "host": self.hosts[host], "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


@pytest.fixture
async def servers():
    """Two loopback servers: 127.0.0.1 (the allowed one in these tests) and 127.0.0.2 (refused)."""
    hits: list[str] = []

    async def hello(request):
        hits.append(f"{request.host}{request.path}")
        return web.json_response({"hello": request.url.host})

    async def redirect(request):
        hits.append(f"{request.host}{request.path}")
        return web.Response(status=302, headers={"Location": request.query["to"]})

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    allowed_site, refused_site = web.TCPSite(runner, "127.0.0.1", 0), web.TCPSite(runner, "127.0.0.2", 0)
    await allowed_site.start()
    await refused_site.start()
    ports = [site._server.sockets[0].getsockname()[1] for site in (allowed_site, refused_site)]
    yield SimpleNamespace(allowed=f"http://127.0.0.1:{ports[0]}", refused=f"http://127.0.0.2:{ports[1]}",
                          refused_port=ports[1], hits=hits)
    await runner.cleanup()


@pytest.fixture
async def make_processor():
    made = []

    def make(**kwargs):
        processor = HttpProcessor(**kwargs)
        made.append(processor)
        return processor

    yield make
    for processor in made:
        await processor.close()


async def run(processor, **payload):
    return await processor.process(Job.new(JobSpec(type="http", payload=payload)))


async def test_loopback_is_refused_by_default_and_never_dialled(servers, make_processor):
    with pytest.raises(PermanentError, match="destination not allowed") as caught:
        await run(make_processor(), url=f"{servers.allowed}/hello")
    assert "Cannot connect" not in str(caught.value)
    assert servers.hits == []


async def test_an_allowlisted_loopback_server_is_reached(servers, make_processor):
    processor = make_processor(policy=DestinationPolicy(allow=["127.0.0.1/32"]))
    result = await run(processor, url=f"{servers.allowed}/hello")
    assert result["status"] == 200
    assert servers.hits == [f"{servers.allowed.removeprefix('http://')}/hello"]


async def test_a_redirect_from_an_allowed_server_to_a_refused_address_is_not_followed(servers, make_processor):
    processor = make_processor(policy=DestinationPolicy(allow=["127.0.0.1/32"]))
    with pytest.raises(PermanentError, match="destination not allowed"):
        await run(processor, url=f"{servers.allowed}/redirect?to={servers.refused}/hello")
    assert [hit.endswith("/redirect") for hit in servers.hits] == [True]  # the refused server saw nothing


async def test_a_name_that_resolves_to_a_refused_address_is_refused(servers, make_processor):
    resolver = HostsResolver({"hooks.example.test": "127.0.0.2", "ok.example.test": "127.0.0.1"})
    processor = make_processor(policy=DestinationPolicy(allow=["127.0.0.1/32"]), resolver=resolver)
    with pytest.raises(PermanentError, match="destination not allowed"):
        await run(processor, url=f"http://hooks.example.test:{servers.refused_port}/hello")
    assert servers.hits == []
    port = servers.allowed.rsplit(":", 1)[1]
    assert (await run(processor, url=f"http://ok.example.test:{port}/hello"))["status"] == 200


async def test_localhost_through_the_system_resolver_is_refused(servers, make_processor):
    port = servers.allowed.rsplit(":", 1)[1]
    with pytest.raises(PermanentError, match="destination not allowed"):
        await run(make_processor(), url=f"http://localhost:{port}/hello")
    assert servers.hits == []


async def test_a_failed_connection_says_only_connection_failed(make_processor):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processor = make_processor(policy=DestinationPolicy(allow=["127.0.0.1/32"]))
    with pytest.raises(RetryableError) as caught:
        await run(processor, url=f"http://127.0.0.1:{port}/")
    assert str(caught.value) == f"http: GET http://127.0.0.1:{port}/: connection failed"


# --- who may submit http jobs -------------------------------------------------------------------


async def test_only_admins_submit_http_jobs_by_default(start_node):
    client = await start_node(WORKER_COUNT="0", **auth_env())
    job = {"type": "http", "payload": {"url": "https://example.com/"}}
    as_user = await client.post("/api/v1/jobs", json=job, headers=bearer(token_for("user")))
    assert as_user.status == 403
    error = (await as_user.json())["error"]
    assert error["code"] == "forbidden" and error["details"]["type"] == "http"
    batch = await client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "echo"}, job]},
                              headers=bearer(token_for("user")))
    assert batch.status == 403
    assert (await client.post("/api/v1/jobs", json={"type": "echo"}, headers=bearer(token_for("user")))).status == 201
    assert (await client.post("/api/v1/jobs", json=job, headers=bearer(token_for("admin")))).status == 201


async def test_job_type_roles_can_open_http_to_users(start_node):
    client = await start_node(WORKER_COUNT="0", **auth_env(JOB_TYPE_ROLES="http=user,email=admin"))
    job = {"type": "http", "payload": {"url": "https://example.com/"}}
    assert (await client.post("/api/v1/jobs", json=job, headers=bearer(token_for("user")))).status == 201
    mail = {"type": "email", "payload": {"recipient": "a@example.com", "subject": "hi"}}
    assert (await client.post("/api/v1/jobs", json=mail, headers=bearer(token_for("user")))).status == 403
