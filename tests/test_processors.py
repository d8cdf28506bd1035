"""Processors: the registry, entry-point plugins, and the built-ins against real loopback servers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import socket
import sys
import textwrap
import threading
import uuid
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from jobnode.processors import registry as processors
from jobnode.core.errors import NotFound
from jobnode.core.job import Job, JobSpec
from jobnode.processors.catalog import build_registry
from jobnode.processors.destinations import DestinationPolicy
from jobnode.processors.mail import EmailProcessor, SmtpConfig
from jobnode.processors.registry import (
    FunctionProcessor,
    PermanentError,
    ProcessorRegistry,
    RetryableError,
    UnknownProcessorType,
    register_processor,
)
from jobnode.processors.threads import run_in_thread
from jobnode.processors.webhook import MAX_RESPONSE_BODY_BYTES, HttpProcessor


def make_job(type_name: str, payload: dict) -> Job:
    return Job.new(JobSpec(type=type_name, payload=payload))


def make_settings(**smtp) -> SimpleNamespace:
    fields = dict(
        smtp_host=None,
        smtp_port=25,
        smtp_username=None,
        smtp_password=None,
        smtp_from="jobnode@localhost",
        smtp_starttls=False,
        smtp_allowed_from=None,
        http_processor_allow=None,
        http_processor_deny=None,
    )
    fields.update(smtp)
    return SimpleNamespace(**fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def code_registry(monkeypatch):
    """A fresh module-level registry, so code registration in one test does not leak into others."""
    fresh = ProcessorRegistry()
    monkeypatch.setattr(processors, "default_registry", fresh)
    return fresh


class Upper:
    type = "upper"

    async def process(self, job):
        return job.payload["text"].upper()


# --- registry -----------------------------------------------------------------------------------


async def test_register_async_function_class_and_instance():
    registry = ProcessorRegistry()

    async def double(job):
        return job.payload["n"] * 2

    registry.register("double", double)
    registry.register("upper", Upper)
    instance = Upper()
    instance.type = "upper2"
    registry.register("upper2", instance)

    assert isinstance(registry.get("double"), FunctionProcessor)
    assert await registry.get("double").process(make_job("double", {"n": 21})) == 42
    assert await registry.get("upper").process(make_job("upper", {"text": "ab"})) == "AB"
    assert registry.get("upper2") is instance
    assert all(registry.get(name).type == name for name in registry.types())


async def test_types_sorted_and_unknown_type_is_typed_error():
    registry = ProcessorRegistry()
    for name in ("zeta", "alpha", "mid"):
        registry.register(name, FunctionProcessor(name, _noop))
    assert registry.types() == ["alpha", "mid", "zeta"]
    assert "mid" in registry and "nope" not in registry and len(registry) == 3
    with pytest.raises(UnknownProcessorType) as caught:
        registry.get("nope")
    assert isinstance(caught.value, NotFound) and isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("no processor for job type 'nope'")
    assert caught.value.type_name == "nope"
    assert caught.value.details["registered_types"] == ["alpha", "mid", "zeta"]


async def _noop(job):
    return None


def _sync_fn(job):
    return None


@pytest.mark.parametrize(
    ("name", "target", "error"),
    [
        ("upper", _sync_fn, TypeError),  # blocking function
        ("upper", 42, TypeError),  # not a processor at all
        ("other", Upper, ValueError),  # its type says "upper"
        ("", _noop, ValueError),
        ("has space", _noop, ValueError),
        ("x" * 101, _noop, ValueError),
    ],
)
def test_register_rejects_what_is_not_a_processor(name, target, error):
    with pytest.raises(error):
        ProcessorRegistry().register(name, target)


async def test_duplicate_registration_replaces_with_warning_and_close_reaches_both(caplog):
    closed = []

    class Closing:
        type = "dup"

        def __init__(self, tag):
            self.tag = tag

        async def process(self, job):
            return self.tag

        async def close(self):
            closed.append(self.tag)

    registry = ProcessorRegistry()
    registry.add(Closing("first"))
    with caplog.at_level(logging.WARNING, logger="jobnode.processors.registry"):
        registry.add(Closing("second"))
    assert await registry.get("dup").process(make_job("dup", {})) == "second"
    assert any("replaced" in r.getMessage() and "'dup'" in r.getMessage() for r in caplog.records)
    await registry.close()
    assert sorted(closed) == ["first", "second"]


async def test_close_logs_a_failing_close_and_goes_on(caplog):
    closed = []

    class Broken:
        type = "broken"

        async def process(self, job):
            return None

        async def close(self):
            raise RuntimeError("close failed")

    class Fine(Broken):
        type = "fine"

        async def close(self):
            closed.append(self.type)

    registry = ProcessorRegistry()
    registry.add(Broken())
    registry.add(Fine())
    await registry.close()
    assert closed == ["fine"]
    assert any("closing processor" in r.getMessage() for r in caplog.records)


async def test_register_processor_call_and_decorator_forms(code_registry):
    @register_processor("decorated")
    async def decorated(job):
        return "decorated"

    @register_processor("upper")
    class DecoratedUpper(Upper):
        pass

    register_processor("direct", _noop)

    assert decorated.__name__ == "decorated"  # the decorator hands back what it got
    assert isinstance(DecoratedUpper, type)
    assert code_registry.types() == ["decorated", "direct", "upper"]
    assert await code_registry.get("decorated").process(make_job("decorated", {})) == "decorated"


async def test_build_registry_has_builtins_and_code_registration_wins(code_registry, caplog):
    async def my_echo(job):
        return "mine"

    register_processor("echo", my_echo)
    register_processor("custom", _noop)
    registry = build_registry(make_settings())
    try:
        assert {"echo", "sleep", "http", "email", "custom"} <= set(registry.types())
        assert await registry.get("echo").process(make_job("echo", {"a": 1})) == "mine"
        assert any("replaced" in r.getMessage() for r in caplog.records)
    finally:
        await registry.close()


async def test_build_registry_accepts_real_settings_when_config_exists():
    config = pytest.importorskip("jobnode.core.settings")
    registry = build_registry(config.Settings.from_env({}, env_file=None))
    try:
        result = await registry.get("email").process(
            make_job("email", {"recipient": "a@example.com", "subject": "hi"})
        )
        assert result["sent"] is False  # SMTP_HOST is unset by default
    finally:
        await registry.close()


# --- entry points -------------------------------------------------------------------------------


PLUGIN_SOURCE = '''
async def shout(job):
    return {"shouted": job.payload["text"].upper()}


class Reverse:
    type = "plugin-class"

    async def process(self, job):
        return job.payload["text"][::-1]


class _Counter:
    type = "plugin-instance"

    def __init__(self):
        self.calls = 0

    async def process(self, job):
        self.calls += 1
        return self.calls


COUNTER = _Counter()
NOT_A_PROCESSOR = 42


def sync_fn(job):
    return 1


class NeedsArgs:
    type = "broken-init"

    def __init__(self, required):
        self.required = required

    async def process(self, job):
        return None
'''

GOOD_ENTRY_POINTS = {"plugin-fn", "plugin-class", "plugin-instance"}
BROKEN_ENTRY_POINTS = {
    "broken-import",
    "broken-attr",
    "broken-kind",
    "broken-sync",
    "broken-init",
    "broken-mismatch",
    "broken-module-raises",
}


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """An installed-looking distribution (a dist-info with entry_points.txt) in a tmp dir on sys.path."""
    tag = uuid.uuid4().hex[:8]
    module, boom = f"jn_plugin_{tag}", f"jn_boom_{tag}"
    (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE)
    (tmp_path / f"{boom}.py").write_text("raise RuntimeError('plugin import failed')\n")
    dist_info = tmp_path / f"jn_plugin_{tag}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: jn-plugin-{tag}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [jobnode.processors]
            plugin-fn = {module}:shout
            plugin-class = {module}:Reverse
            plugin-instance = {module}:COUNTER
            broken-import = jn_missing_{tag}:thing
            broken-attr = {module}:does_not_exist
            broken-kind = {module}:NOT_A_PROCESSOR
            broken-sync = {module}:sync_fn
            broken-init = {module}:NeedsArgs
            broken-mismatch = {module}:Reverse
            broken-module-raises = {boom}:anything

            [some.other.group]
            ignored = {module}:shout
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in (module, boom):
        monkeypatch.delitem(sys.modules, name, raising=False)


async def test_entry_points_load_good_ones_and_skip_broken_ones(plugin_on_path, caplog):
    registry = ProcessorRegistry()
    loaded = registry.load_entry_points()

    assert GOOD_ENTRY_POINTS <= set(loaded)
    assert not BROKEN_ENTRY_POINTS & set(registry.types())
    assert BROKEN_ENTRY_POINTS <= set(registry.load_errors)
    assert "ModuleNotFoundError" in registry.load_errors["broken-import"]
    assert "plugin import failed" in registry.load_errors["broken-module-raises"]
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert all(f"'{name}'" in logged for name in BROKEN_ENTRY_POINTS)
    assert "ignored" not in registry

    assert await registry.get("plugin-fn").process(make_job("plugin-fn", {"text": "hi"})) == {"shouted": "HI"}
    assert await registry.get("plugin-class").process(make_job("plugin-class", {"text": "abc"})) == "cba"
    counter = registry.get("plugin-instance")
    assert await counter.process(make_job("plugin-instance", {})) == 1
    assert await counter.process(make_job("plugin-instance", {})) == 2


async def test_build_registry_includes_entry_points(plugin_on_path, code_registry):
    registry = build_registry(make_settings())
    try:
        assert GOOD_ENTRY_POINTS | {"echo", "sleep", "http", "email"} <= set(registry.types())
    finally:
        await registry.close()


# --- run_in_thread --------------------------------------------------------------------------------


async def test_run_in_thread_runs_off_the_loop_without_blocking_it():
    started, release = threading.Event(), threading.Event()

    def blocking(a, *, b):
        started.set()
        if not release.wait(timeout=10):
            raise AssertionError("the event loop never got to release the thread")
        return a + b, threading.get_ident()

    task = asyncio.create_task(run_in_thread(blocking, 1, b=2))
    # The loop keeps running while the thread blocks: this coroutine is what unblocks it.
    while not started.is_set():
        await asyncio.sleep(0.001)
    release.set()
    total, thread_id = await asyncio.wait_for(task, timeout=10)
    assert total == 3
    assert thread_id != threading.get_ident()


# --- echo and sleep -------------------------------------------------------------------------------


async def test_echo_returns_the_payload():
    registry = build_registry(make_settings())
    payload = {"a": [1, 2, {"b": None}], "s": "x"}
    assert await registry.get("echo").process(make_job("echo", payload)) == payload
    await registry.close()


async def test_sleep_returns_what_it_slept():
    sleep = build_registry(make_settings()).get("sleep")
    assert await sleep.process(make_job("sleep", {"seconds": 0})) == {"slept_seconds": 0.0}
    assert await sleep.process(make_job("sleep", {"seconds": 0.01})) == {"slept_seconds": 0.01}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "payload.seconds"),
        ({"seconds": "1"}, "payload.seconds"),
        ({"seconds": True}, "payload.seconds"),
        ({"seconds": -1}, "payload.seconds"),
        ({"seconds": 3600.5}, "payload.seconds"),
        ({"seconds": float("nan")}, "payload.seconds"),
        ({"seconds": 0, "fail": "yes"}, "payload.fail"),
        ({"seconds": 0, "fail_permanently": 1}, "payload.fail_permanently"),
    ],
)
async def test_sleep_rejects_bad_payload_naming_the_field(payload, field):
    sleep = build_registry(make_settings()).get("sleep")
    with pytest.raises(PermanentError) as caught:
        await sleep.process(make_job("sleep", payload))
    assert caught.value.field == field
    assert field in str(caught.value)


async def test_sleep_fail_switches():
    sleep = build_registry(make_settings()).get("sleep")
    with pytest.raises(RetryableError) as retryable:
        await sleep.process(make_job("sleep", {"seconds": 0, "fail": True}))
    assert not isinstance(retryable.value, PermanentError)
    with pytest.raises(PermanentError):
        await sleep.process(make_job("sleep", {"seconds": 0, "fail": True, "fail_permanently": True}))


# --- http ---------------------------------------------------------------------------------------


@pytest.fixture
async def web_server():
    """A real aiohttp server on two loopback ports (two origins), torn down after the test."""
    release = asyncio.Event()

    async def echo(request):
        raw = await request.read()
        seen = {k: request.headers.get(k) for k in ("X-Custom", "Authorization", "Cookie", "Content-Type")}
        return web.json_response(
            {
                "method": request.method,
                "json": json.loads(raw) if request.content_type == "application/json" else None,
                "text": raw.decode() if request.content_type != "application/json" else None,
                "headers": seen,
            }
        )

    async def status(request):
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def slow(request):
        await release.wait()
        return web.Response(text="late")

    async def redirect(request):
        code = int(request.query.get("code", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    async def set_cookie(request):
        response = web.Response(text="cookie set")
        response.set_cookie("session", "abc")
        return response

    async def hello(request):
        return web.json_response({"hello": "world"})

    async def big(request):
        return web.Response(text="x" * (MAX_RESPONSE_BODY_BYTES + 5000))

    async def loop(request):
        return web.Response(status=302, headers={"Location": "/loop"})

    app = web.Application()
    app.router.add_get("/json", hello)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/set-cookie", set_cookie)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    sites = [web.TCPSite(runner, "127.0.0.1", 0) for _ in range(2)]
    for site in sites:
        await site.start()
    ports = [s._server.sockets[0].getsockname()[1] for s in sites]
    yield SimpleNamespace(url=f"http://127.0.0.1:{ports[0]}", other_url=f"http://127.0.0.1:{ports[1]}")
    release.set()
    await runner.cleanup()


@pytest.fixture
async def http():
    # The test servers are on loopback, which the default destination policy refuses.
    processor = HttpProcessor(DestinationPolicy(allow=["127.0.0.1/32"]))
    yield processor
    await processor.close()


async def run_http(processor, **payload):
    return await processor.process(make_job("http", payload))


async def test_http_get_json(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/json")
    assert result["status"] == 200
    assert result["headers"]["content-type"].startswith("application/json")
    assert json.loads(result["body"]) == {"hello": "world"}
    assert result["truncated"] is False
    assert result["elapsed_ms"] >= 0


async def test_http_post_json_with_headers(http, web_server):
    result = await run_http(
        http, url=f"{web_server.url}/echo", method="post", json={"n": [1, 2]}, headers={"X-Custom": "yes"}
    )
    seen = json.loads(result["body"])
    assert seen["method"] == "POST"
    assert seen["json"] == {"n": [1, 2]}
    assert seen["headers"]["X-Custom"] == "yes"


async def test_http_put_string_body(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/echo", method="PUT", body="plain words")
    seen = json.loads(result["body"])
    assert (seen["method"], seen["text"]) == ("PUT", "plain words")


async def test_http_head_has_no_body(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/json", method="HEAD")
    assert (result["status"], result["body"], result["truncated"]) == (200, "", False)


@pytest.mark.parametrize("code", [500, 503, 408, 429])
async def test_http_server_errors_and_throttling_are_retryable(http, web_server, code):
    with pytest.raises(RetryableError) as caught:
        await run_http(http, url=f"{web_server.url}/status/{code}")
    assert not isinstance(caught.value, PermanentError)
    assert str(code) in str(caught.value)


@pytest.mark.parametrize("code", [400, 401, 404, 410])
async def test_http_client_errors_are_permanent(http, web_server, code):
    with pytest.raises(PermanentError, match=str(code)):
        await run_http(http, url=f"{web_server.url}/status/{code}")


async def test_http_expect_status(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/status/404", expect_status=[200, 404])
    assert result["status"] == 404
    with pytest.raises(PermanentError, match="expected 201"):
        await run_http(http, url=f"{web_server.url}/json", expect_status=201)
    with pytest.raises(RetryableError):  # a 5xx stays retryable even when not expected
        await run_http(http, url=f"{web_server.url}/status/502", expect_status=200)


async def test_http_timeout_is_retryable(http, web_server):
    with pytest.raises(RetryableError, match="within 0.2s"):
        await run_http(http, url=f"{web_server.url}/slow", timeout_seconds=0.2)


async def test_http_connection_refused_is_retryable(http):
    with pytest.raises(RetryableError) as caught:
        await run_http(http, url=f"http://127.0.0.1:{free_port()}/")
    assert not isinstance(caught.value, PermanentError)


async def test_http_truncates_a_large_body(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/big")
    assert result["truncated"] is True
    assert len(result["body"]) == MAX_RESPONSE_BODY_BYTES
    assert result["headers"]["content-length"] == str(MAX_RESPONSE_BODY_BYTES + 5000)


async def test_http_follows_same_scheme_redirects(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/redirect?to=/json")
    assert json.loads(result["body"]) == {"hello": "world"}
    # 303 after a POST continues as a GET without the body.
    post = dict(method="POST", json={"a": 1})
    result = await run_http(http, url=f"{web_server.url}/redirect?to=/echo&code=303", **post)
    assert json.loads(result["body"])["method"] == "GET"
    # 307 keeps the method and the body.
    result = await run_http(http, url=f"{web_server.url}/redirect?to=/echo&code=307", **post)
    assert json.loads(result["body"])["json"] == {"a": 1}


async def test_http_redirect_status_in_expect_status_is_returned_not_followed(http, web_server):
    result = await run_http(http, url=f"{web_server.url}/redirect?to=/json", expect_status=302)
    assert result["status"] == 302


async def test_http_refuses_scheme_change_and_redirect_loops(http, web_server):
    https_target = web_server.url.replace("http://", "https://") + "/json"
    with pytest.raises(PermanentError, match="changes the scheme"):
        await run_http(http, url=f"{web_server.url}/redirect?to={https_target}")
    with pytest.raises(PermanentError, match="more than 5 redirects"):
        await run_http(http, url=f"{web_server.url}/loop")


async def test_http_drops_credentials_on_cross_origin_redirect(http, web_server):
    headers = {"Authorization": "Bearer t0ken", "X-Custom": "kept"}
    same = await run_http(http, url=f"{web_server.url}/redirect?to=/echo", headers=headers)
    assert json.loads(same["body"])["headers"]["Authorization"] == "Bearer t0ken"
    elsewhere = f"{web_server.url}/redirect?to={web_server.other_url}/echo"
    other = await run_http(http, url=elsewhere, headers=headers)
    seen = json.loads(other["body"])["headers"]
    assert seen["Authorization"] is None
    assert seen["X-Custom"] == "kept"


async def test_http_keeps_no_cookies_between_jobs(http, web_server):
    await run_http(http, url=f"{web_server.url}/set-cookie")
    result = await run_http(http, url=f"{web_server.url}/echo")
    assert json.loads(result["body"])["headers"]["Cookie"] is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "payload.url"),
        ({"url": "ftp://127.0.0.1/file"}, "payload.url"),
        ({"url": "not a url"}, "payload.url"),
        ({"url": 12}, "payload.url"),
        ({"url": "http://127.0.0.1/", "method": "TRACE"}, "payload.method"),
        ({"url": "http://127.0.0.1/", "headers": ["X-A: b"]}, "payload.headers"),
        ({"url": "http://127.0.0.1/", "headers": {"X-A": 1}}, "payload.headers.X-A"),
        ({"url": "http://127.0.0.1/", "headers": {"X-A": "b\r\nX-Evil: 1"}}, "payload.headers.X-A"),
        ({"url": "http://127.0.0.1/", "headers": {"Bad Name": "v"}}, "payload.headers.Bad Name"),
        ({"url": "http://127.0.0.1/", "headers": {"Content-Length": "5"}}, "payload.headers.Content-Length"),
        ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "payload.body"),
        ({"url": "http://127.0.0.1/", "body": {"a": 1}}, "payload.body"),
        ({"url": "http://127.0.0.1/", "timeout_seconds": 0}, "payload.timeout_seconds"),
        ({"url": "http://127.0.0.1/", "timeout_seconds": 301}, "payload.timeout_seconds"),
        ({"url": "http://127.0.0.1/", "expect_status": "200"}, "payload.expect_status"),
        ({"url": "http://127.0.0.1/", "expect_status": []}, "payload.expect_status"),
        ({"url": "http://127.0.0.1/", "expect_status": [200, 700]}, "payload.expect_status"),
        ({"url": "http://127.0.0.1/", "header": {"X-A": "b"}}, "payload.header"),
    ],
)
async def test_http_rejects_bad_payload_naming_the_field(http, payload, field):
    with pytest.raises(PermanentError) as caught:
        await http.process(make_job("http", payload))
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ":")


async def test_registry_close_closes_the_http_session(web_server, code_registry):
    registry = build_registry(make_settings(http_processor_allow=("127.0.0.1/32",)))
    http = registry.get("http")
    await http.process(make_job("http", {"url": f"{web_server.url}/json"}))
    session = http._session
    assert session is not None and not session.closed
    await registry.close()
    assert session.closed


# --- email --------------------------------------------------------------------------------------


class CollectingHandler:
    """An aiosmtpd handler that keeps what it receives and refuses some recipients on purpose."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            SimpleNamespace(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=email.message_from_bytes(envelope.content, policy=email.policy.default),
                login=session.auth_data if session.authenticated else None,
            )
        )
        return "250 Message accepted for delivery"


def check_login(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (b"mailer", b"s3cret")
    # handled=False: let aiosmtpd send the standard 535 reply itself on failure.
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@pytest.fixture
def smtp_server():
    handler = CollectingHandler()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), authenticator=check_login, auth_require_tls=False
    )
    controller.start()
    yield SimpleNamespace(handler=handler, port=controller.port)
    controller.stop()


def email_processor(port=None, **smtp):
    host = "127.0.0.1" if port is not None else None
    settings = make_settings(smtp_host=host, smtp_port=port or 25, **smtp)
    return EmailProcessor(SmtpConfig.from_settings(settings))


async def send_email(processor, **payload):
    return await processor.process(make_job("email", payload))


async def test_email_sends_through_smtp(smtp_server):
    processor = email_processor(smtp_server.port, smtp_from="Jobs <jobs@example.com>")
    payload = {"recipient": "ann@example.com", "subject": "Report ready", "body": "Line 1\nLine 2\n"}
    job = make_job("email", payload)
    result = await processor.process(job)

    assert result["sent"] is True
    assert result["recipients"] == ["ann@example.com"]
    assert result["refused"] == {}
    (delivered,) = smtp_server.handler.messages
    assert delivered.mail_from == "jobs@example.com"
    assert delivered.rcpt_tos == ["ann@example.com"]
    message = delivered.message
    assert message["Subject"] == "Report ready"
    assert message["From"] == "Jobs <jobs@example.com>"
    assert message["To"] == "ann@example.com"
    assert message["Message-ID"] == result["message_id"]
    assert message["X-Jobnode-Job-Id"] == job.id
    assert message.get_content().replace("\r\n", "\n") == "Line 1\nLine 2\n"  # SMTP carries CRLF
    assert delivered.login is None


async def test_email_list_of_recipients_display_names_and_unicode(smtp_server):
    processor = email_processor(smtp_server.port, smtp_allowed_from=("example.net",))
    result = await send_email(
        processor,
        recipient=["Doe, Jane <jane@example.com>", "bob@example.org"],
        subject="Grüße — ünïcode",
        body="Hallo Wörld",
        **{"from": "sender@example.net"},
    )
    assert result["recipients"] == ["jane@example.com", "bob@example.org"]
    (delivered,) = smtp_server.handler.messages
    assert delivered.rcpt_tos == ["jane@example.com", "bob@example.org"]
    assert delivered.mail_from == "jobnode@localhost"  # the envelope sender is always SMTP_FROM
    assert delivered.message["From"] == "sender@example.net"
    assert delivered.message["Subject"] == "Grüße — ünïcode"
    assert [a.addr_spec for a in delivered.message["To"].addresses] == ["jane@example.com", "bob@example.org"]
    assert delivered.message["To"].addresses[0].display_name == "Doe, Jane"
    assert delivered.message.get_content().strip() == "Hallo Wörld"


async def test_email_from_outside_the_allowed_domains_is_refused_and_nothing_is_sent(smtp_server):
    processor = email_processor(smtp_server.port, smtp_from="Jobs <jobs@example.com>",
                                smtp_allowed_from=("example.com",))
    for spoofed in ("ceo@bank.example", "Jobs <jobs@example.com.evil.example>"):
        with pytest.raises(PermanentError) as caught:
            await send_email(processor, recipient="ann@example.com", subject="s", **{"from": spoofed})
        assert caught.value.field == "payload.from"
    strict = email_processor(smtp_server.port, smtp_from="Jobs <jobs@example.com>")
    with pytest.raises(PermanentError, match="jobs@example.com"):
        await send_email(strict, recipient="ann@example.com", subject="s", **{"from": "other@example.com"})
    assert smtp_server.handler.messages == []
    await send_email(processor, recipient="ann@example.com", subject="s", **{"from": "Team <team@example.com>"})
    await send_email(strict, recipient="ann@example.com", subject="s", **{"from": "Renamed <jobs@example.com>"})
    assert [m.mail_from for m in smtp_server.handler.messages] == ["jobs@example.com", "jobs@example.com"]


async def test_email_logs_in_when_configured(smtp_server):
    processor = email_processor(smtp_server.port, smtp_username="mailer", smtp_password="s3cret")
    result = await send_email(processor, recipient="ann@example.com", subject="authenticated")
    assert result["sent"] is True
    assert smtp_server.handler.messages[0].login == b"mailer"

    wrong = email_processor(smtp_server.port, smtp_username="mailer", smtp_password="wrong")
    with pytest.raises(PermanentError, match="535"):
        await send_email(wrong, recipient="ann@example.com", subject="refused")
    assert "wrong" not in repr(wrong.config)


async def test_email_rejections_5xx_permanent_4xx_retryable(smtp_server):
    processor = email_processor(smtp_server.port)
    with pytest.raises(PermanentError, match="550"):
        await send_email(processor, recipient="reject@example.com", subject="s")
    with pytest.raises(RetryableError, match="450"):
        await send_email(processor, recipient="later@example.com", subject="s")
    assert smtp_server.handler.messages == []

    partial = await send_email(processor, recipient=["reject@example.com", "ok@example.com"], subject="s")
    assert partial["recipients"] == ["ok@example.com"]
    assert partial["refused"]["reject@example.com"].startswith("550")
    assert smtp_server.handler.messages[0].rcpt_tos == ["ok@example.com"]


async def test_email_connection_refused_is_retryable():
    processor = email_processor(free_port())
    with pytest.raises(RetryableError, match="cannot deliver") as caught:
        await send_email(processor, recipient="ann@example.com", subject="s")
    assert not isinstance(caught.value, PermanentError)


async def test_email_without_smtp_host_records_instead_of_sending():
    result = await send_email(email_processor(), recipient=["a@example.com"], subject="hello", body="text")
    assert result == {
        "sent": False,
        "recorded": {
            "from": "jobnode@localhost",
            "recipients": ["a@example.com"],
            "subject": "hello",
            "body": "text",
        },
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "s"}, "payload.recipient"),
        ({"recipient": "not-an-email", "subject": "s"}, "payload.recipient"),
        ({"recipient": "a@@example.com", "subject": "s"}, "payload.recipient"),
        ({"recipient": 7, "subject": "s"}, "payload.recipient"),
        ({"recipient": [], "subject": "s"}, "payload.recipient"),
        ({"recipient": ["a@example.com", "nope"], "subject": "s"}, "payload.recipient[1]"),
        ({"recipient": "a@example.com"}, "payload.subject"),
        ({"recipient": "a@example.com", "subject": "   "}, "payload.subject"),
        ({"recipient": "a@example.com", "subject": 5}, "payload.subject"),
        ({"recipient": "a@example.com", "subject": "s", "body": ["x"]}, "payload.body"),
        ({"recipient": "a@example.com", "subject": "s", "from": "me"}, "payload.from"),
        ({"recipient": "a@example.com", "subject": "s", "cc": "b@example.com"}, "payload.cc"),
    ],
)
async def test_email_rejects_bad_payload_naming_the_field(payload, field):
    with pytest.raises(PermanentError) as caught:
        await email_processor().process(make_job("email", payload))
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ":")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"recipient": "a@example.com", "subject": "Hi\r\nBcc: victim@example.com"}, "payload.subject"),
        ({"recipient": "a@example.com", "subject": "Hi\nBcc: victim@example.com"}, "payload.subject"),
        ({"recipient": "a@example.com\r\nBcc: victim@example.com", "subject": "s"}, "payload.recipient"),
        ({"recipient": "a@example.com", "subject": "s", "from": "a@example.com\nBcc: v@x.com"}, "payload.from"),
    ],
)
async def test_email_refuses_header_injection(smtp_server, payload, field):
    with pytest.raises(PermanentError) as caught:
        await email_processor(smtp_server.port).process(make_job("email", payload))
    assert caught.value.field == field
    assert smtp_server.handler.messages == []


def test_email_bad_smtp_from_is_a_configuration_error():
    with pytest.raises(ValueError, match="SMTP_FROM"):
        email_processor(smtp_from="not an address")
