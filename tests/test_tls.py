"""TLS: development certificates, the node's https port, mutual TLS on the peer route, bad files."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jobnode import election
from jobnode.election.messages import BullyElection
from jobnode.api.appkeys import TLS
from jobnode.dev.certs import DevCerts, write_dev_certs
from jobnode.cli.main import main as cli_main
from jobnode.client import AsyncClient, ConnectionFailed
from jobnode.core.settings import VARIABLES, ConfigError, Settings
from jobnode.dev.embedded import free_port
from jobnode.node import build_app
from jobnode.core.errors import Unauthorized
from jobnode.auth.peer_signatures import Verifier, _mac, sign
from jobnode.cluster.peers import ELECTION_PATH
from jobnode.auth.tls import peer_client_context
from tests.harness import make_settings

SECRET = "D5N3hDdlRvKZZZrLZ21tadK87SIJRdJEiuuI1bZ8lN4"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return write_dev_certs(tmp_path_factory.mktemp("certs"), ["node-1", "node-2"], ["node1.internal"])


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """Certificates from another CA: valid-looking, but not this cluster's."""
    return write_dev_certs(tmp_path_factory.mktemp("other-ca"), ["node-1"])


def tls_env(certs: DevCerts, port: int, *, ca: bool = True) -> dict[str, str]:
    pair = certs.nodes["node-1"]
    env = {"TLS_ENABLED": "true", "TLS_CERT_FILE": str(pair.cert_file), "TLS_KEY_FILE": str(pair.key_file),
           "SERVER_HOST": "127.0.0.1", "SERVER_PORT": str(port), "CLUSTER_SECRET": SECRET}
    if ca:
        env["TLS_CA_FILE"] = str(certs.ca_file)
    return env


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The node on its own port exactly as `serve()` runs it (TLS included); yields its base URL."""
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.server_host, settings.server_port,
                          ssl_context=app[TLS].server).start()
        yield settings.advertise_url
    finally:
        await runner.cleanup()


@pytest.fixture
async def tls_node(redis_server, mongo_server, key_prefix, mongo_db_name, mongo_client, certs):
    port = free_port()
    settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name, **tls_env(certs, port))
    async with serving(settings) as url:
        yield url


def test_dev_certificates_name_the_node_and_its_hosts(certs: DevCerts, tmp_path: Path):
    cert = x509.load_pem_x509_certificate(certs.nodes["node-1"].cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"node-1", "localhost", "node1.internal"} <= set(names.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "::1"} <= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    for secret_file in (certs.ca_key_file, certs.nodes["node-1"].key_file):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # Adding a node later signs it with the same CA.
    again = write_dev_certs(certs.ca_file.parent, ["node-3"])
    assert again.ca_file.read_bytes() == certs.ca_file.read_bytes()
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    context.load_cert_chain(str(again.nodes["node-3"].cert_file), str(again.nodes["node-3"].key_file))
    with pytest.raises(ValueError, match="node ids"):
        write_dev_certs(tmp_path, ["node 1"])


def test_jobnode_cert_command_writes_what_it_prints(tmp_path: Path, capsys):
    assert cli_main(["cert", "--out", str(tmp_path), "--nodes", "a,b", "--hosts", "db.example,10.1.2.3"]) == 0
    printed = capsys.readouterr().out
    for node in ("a", "b"):
        assert (tmp_path / node / "cert.pem").is_file() and f"TLS_CERT_FILE={tmp_path / node / 'cert.pem'}" in printed
    assert cli_main(["cert", "--out", str(tmp_path), "--nodes", "bad/id"]) == 2


async def test_a_tls_node_serves_https_to_clients_that_trust_its_ca(tls_node: str, certs: DevCerts):
    assert tls_node.startswith("https://")
    async with AsyncClient(tls_node, ca_file=str(certs.ca_file), max_attempts=1) as client:
        assert (await client.health())["status"] == "ok"
        job = await client.submit("echo", {"over": "tls"})
        assert (await client.wait(job["id"], timeout_s=30))["result"] == {"over": "tls"}


async def test_a_client_without_the_ca_is_refused_by_verification(tls_node: str, stranger: DevCerts):
    for ca_file in (None, str(stranger.ca_file)):
        async with AsyncClient(tls_node, ca_file=ca_file, max_attempts=1) as client:
            with pytest.raises(ConnectionFailed, match="not trusted"):
                await client.health()


async def test_the_cli_without_the_ca_says_the_node_answered_and_names_ca_file(tls_node: str, certs: DevCerts,
                                                                                 capsys, monkeypatch):
    monkeypatch.delenv("JOBNODE_CA_FILE", raising=False)
    code = await asyncio.to_thread(cli_main, ["--url", tls_node, "jobs"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{tls_node} answered, but its TLS certificate is not trusted" in err
    assert "--ca-file FILE" in err and "ca_file" not in err.replace("--ca-file", "")
    assert "is a jobnode node running" not in err
    code = await asyncio.to_thread(cli_main, ["--url", tls_node, "--ca-file", str(certs.ca_file), "--json", "jobs"])
    # The node runs in this process, and its own log lines (an election finishing late on a busy
    # machine) share stdout with the command's JSON: find that among them.
    printed = capsys.readouterr().out.splitlines()
    assert code == 0 and any(line.startswith('{"jobs": [') for line in printed), printed


def _health(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`jobnode health` as a container runs it: the node's own environment, nothing else."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TLS_", "SERVER_", "JOBNODE_"))}
    return subprocess.run([sys.executable, "-m", "jobnode", "health"], env={**clean, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


async def test_the_container_health_check_works_with_tls_on(tls_node: str, certs: DevCerts, tmp_path: Path):
    port = int(tls_node.rsplit(":", 1)[1])
    done = await asyncio.to_thread(_health, tls_env(certs, port), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"healthy: https://127.0.0.1:{port}/health answered 200")
    # Without TLS_CA_FILE the system store decides, and it does not know the development CA.
    done = await asyncio.to_thread(_health, tls_env(certs, port, ca=False), tmp_path)
    assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stderr


async def test_the_container_health_check_works_with_tls_off(redis_server, mongo_server, key_prefix, mongo_db_name,
                                                             mongo_client, tmp_path: Path):
    port = free_port()
    env = {"SERVER_HOST": "0.0.0.0", "SERVER_PORT": str(port)}
    settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name, **env)
    async with serving(settings):
        done = await asyncio.to_thread(_health, env, tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"healthy: http://127.0.0.1:{port}/health"), done.stderr
    done = await asyncio.to_thread(_health, env, tmp_path)  # the node is gone
    assert done.returncode == 1 and "unhealthy" in done.stderr


async def test_plain_http_gets_no_answer_from_a_tls_port(tls_node: str):
    plain = tls_node.replace("https://", "http://")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(plain + "/health") as resp:
                await resp.read()


def _vote() -> bytes:
    message = BullyElection(src="node-2", dst="node-1", src_address="https://127.0.0.1:1",
                            dst_address="https://127.0.0.1:2", epoch=1, priority=0)
    return orjson.dumps(election.encode(message))


async def _post_peer(url: str, context: ssl.SSLContext, *, signed: bool = True) -> int:
    body = _vote()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers.update(sign(SECRET.encode(), "POST", ELECTION_PATH, "node-2", body, time.time()))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(url + ELECTION_PATH, data=body, headers=headers) as resp:
            return resp.status


async def test_the_peer_route_wants_a_client_certificate_and_the_signature(tls_node: str, certs: DevCerts,
                                                                            stranger: DevCerts):
    peer = certs.nodes["node-2"]
    with_cert = peer_client_context(certs.ca_file, peer.cert_file, peer.key_file)
    without_cert = peer_client_context(certs.ca_file)
    assert await _post_peer(tls_node, with_cert) == 204
    assert await _post_peer(tls_node, with_cert, signed=False) == 401  # mTLS does not replace the HMAC
    assert await _post_peer(tls_node, without_cert) == 401  # the HMAC alone is not enough either
    # A certificate from another CA does not even finish the handshake.
    foreign = peer_client_context(certs.ca_file, stranger.nodes["node-1"].cert_file,
                                  stranger.nodes["node-1"].key_file)
    with pytest.raises(aiohttp.ClientError):
        await _post_peer(tls_node, foreign)
    # The API itself stays open to clients without a certificate.
    async with AsyncClient(tls_node, ca_file=str(certs.ca_file), max_attempts=1) as client:
        assert (await client.health())["status"] == "ok"


async def test_without_a_ca_file_peers_need_no_client_certificate(redis_server, mongo_server, key_prefix,
                                                                 mongo_db_name, mongo_client, certs):
    port = free_port()
    settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name,
                             **tls_env(certs, port, ca=False))
    async with serving(settings) as url:
        assert await _post_peer(url, peer_client_context(certs.ca_file)) == 204
        assert await _post_peer(url, peer_client_context(certs.ca_file), signed=False) == 401


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf"])
def test_a_timestamp_that_is_not_a_finite_number_is_refused(timestamp):
    # The signature covers the timestamp, but a window comparison must never be the thing that fails open.
    body = b"{}"
    headers = sign(SECRET.encode(), "POST", ELECTION_PATH, "node-2", body, time.time())
    headers["X-Jobnode-Timestamp"] = timestamp
    headers["X-Jobnode-Signature"] = _mac(SECRET.encode(), "POST", ELECTION_PATH, "node-2", timestamp, body)
    with pytest.raises(Unauthorized, match="timestamp"):
        Verifier(SECRET.encode()).check("POST", ELECTION_PATH, headers, body, time.time())


def _pem_settings(certs: DevCerts, **env: str) -> Settings:
    base = {"METRICS_ENABLED": "false", "CLUSTER_SECRET": SECRET, **tls_env(certs, 8443)}
    return Settings.from_env({**base, **env}, env_file=None)


def test_files_that_do_not_load_stop_the_node_naming_the_variable(certs: DevCerts, tmp_path: Path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = {
        "TLS_CERT_FILE": {"TLS_CERT_FILE": str(garbage)},
        "TLS_CA_FILE": {"TLS_CA_FILE": str(garbage)},
    }
    for variable, env in cases.items():
        with pytest.raises(ConfigError) as caught:
            build_app(_pem_settings(certs, **env))
        assert caught.value.variable == variable and str(garbage) in str(caught.value)
    other_key = certs.nodes["node-2"].key_file
    with pytest.raises(ConfigError, match="do not load") as caught:
        build_app(_pem_settings(certs, TLS_KEY_FILE=str(other_key)))
    assert caught.value.variable == "TLS_CERT_FILE" and str(other_key) in str(caught.value)


def test_a_key_with_a_passphrase_stops_the_node_instead_of_prompting(certs: DevCerts, tmp_path: Path):
    key = serialization.load_pem_private_key(certs.nodes["node-1"].key_file.read_bytes(), password=None)
    locked = tmp_path / "locked-key.pem"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError, match="passphrase") as caught:
        build_app(_pem_settings(certs, TLS_KEY_FILE=str(locked)))
    assert caught.value.variable == "TLS_KEY_FILE"


def test_jobnode_serve_names_the_file_that_does_not_load(certs: DevCerts, tmp_path: Path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    inherited = {key: value for key, value in os.environ.items() if key not in {v.name for v in VARIABLES}}
    env = {**inherited, **tls_env(certs, free_port()), "TLS_CERT_FILE": str(garbage), "METRICS_ENABLED": "false",
           "REDIS_ADDR": "127.0.0.1:1", "MONGODB_URI": "mongodb://127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "jobnode", "serve"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    # It stops before reaching for Redis or MongoDB (both unreachable here) and says why.
    assert done.returncode != 0
    assert "configuration error: TLS_CERT_FILE" in done.stderr and str(garbage) in done.stderr
    assert "Traceback" not in done.stderr


def test_tls_refuses_plain_http_peers(certs: DevCerts):
    with pytest.raises(ConfigError) as caught:
        _pem_settings(certs, PEERS="node-2=http://127.0.0.1:9001", ADVERTISE_URL="https://127.0.0.1:8443")
    assert caught.value.variable == "PEERS" and "https" in str(caught.value)
    ok = _pem_settings(certs, PEERS="node-2=https://127.0.0.1:9001", ADVERTISE_URL="https://127.0.0.1:8443")
    assert ok.peers == {"node-2": "https://127.0.0.1:9001"}


async def test_a_certificate_speaks_only_for_the_node_it_names(tls_node: str, certs: DevCerts):
    third = write_dev_certs(certs.ca_file.parent, ["node-3"]).nodes["node-3"]
    as_node_3 = peer_client_context(certs.ca_file, third.cert_file, third.key_file)
    # node-3's certificate with a valid signature in node-2's name: refused.
    assert await _post_peer(tls_node, as_node_3) == 401
    cert = x509.load_pem_x509_certificate(third.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:jobnode:node:node-3"]


async def test_a_message_must_come_from_the_node_that_signed_it(tls_node: str, certs: DevCerts):
    peer = certs.nodes["node-2"]
    context = peer_client_context(certs.ca_file, peer.cert_file, peer.key_file)
    message = BullyElection(src="node-3", dst="node-1", src_address="https://127.0.0.1:1",
                            dst_address="https://127.0.0.1:2", epoch=1, priority=0)
    body = orjson.dumps(election.encode(message))
    headers = {"Content-Type": "application/json",
               **sign(SECRET.encode(), "POST", ELECTION_PATH, "node-2", body, time.time())}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(tls_node + ELECTION_PATH, data=body, headers=headers) as resp:
            assert resp.status == 401
            assert "signed by 'node-2'" in (await resp.json())["error"]["message"]
