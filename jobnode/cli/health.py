"""`jobnode health`: ask the node configured in this environment whether it can serve.

Meant for container health checks: it reads the node's own settings (SERVER_HOST,
SERVER_PORT, TLS_*), so the same check works with TLS on or off, and exits 0 only when
`GET /health` answers 200.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

from jobnode.core.settings import ConfigError, Settings

DEFAULT_TIMEOUT_S = 3.0
# Wildcard listen addresses: the node is reached on the loopback address then.
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def add_health_parser(commands: Any) -> None:
    health = commands.add_parser(
        "health", help="check the node this environment configures (for container health checks)",
        description="GET /health of the node configured by this environment and exit 0 when it answers 200,"
        " 1 when it does not (or answers otherwise), 2 on a configuration error. With TLS_ENABLED the"
        " check uses https and verifies the certificate against TLS_CA_FILE (the system store when"
        " unset), but not its host name: the node is asked on its own listen address.",
    )
    health.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up after this long (default: {DEFAULT_TIMEOUT_S:g})")
    health.set_defaults(handler=run_health)


def health_url(settings: Settings) -> str:
    host = ANY_ADDRESS.get(settings.server_host, settings.server_host)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.tls_enabled else 'http'}://{host}:{settings.server_port}/health"


def probe_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_enabled:
        return None
    context = ssl.create_default_context(cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None)
    context.check_hostname = False  # the certificate names the node's public address, not its listen one
    if settings.tls_ca_file and settings.tls_cert_file and settings.tls_key_file:
        # With mutual TLS the node may ask for a client certificate: present its own.
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    return context


def run_health(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"jobnode: configuration error: {exc}", file=sys.stderr)
        return 2
    url = health_url(settings)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=probe_context(settings)) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (OSError, ssl.SSLError) as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        return 1
    try:
        report = json.loads(body)
    except ValueError:
        report = {}
    if args.json:
        print(json.dumps({"url": url, "http_status": status, **report}))
    else:
        print(f"{'healthy' if status == 200 else 'unhealthy'}: {url} answered {status}"
              + "".join(f"; {name} {'ok' if check.get('ok') else check.get('error')}"
                        for name, check in (report.get("checks") or {}).items()))
    return 0 if status == 200 else 1
