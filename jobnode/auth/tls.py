"""TLS for the node: the server context of its one port and the client context of its peer traffic.

Built once at start from Settings (`TlsContexts.from_settings`); a file that does not load
stops the node with a ConfigError naming the variable.

One port serves the API and the peer route (`/internal/`), so one server context serves
both. What each side checks:

- API clients verify the node's certificate (against TLS_CA_FILE, or their system store).
- Peers verify each other's server certificate against TLS_CA_FILE (the system store when
  it is unset), including the host name of the peer's address.
- Mutual TLS between peers is on exactly when TLS_CA_FILE is set: every node then presents
  its own certificate (TLS_CERT_FILE) as a client certificate, the server asks every
  connection for one (optional, so API clients without certificates still connect) and
  verifies any it gets against TLS_CA_FILE, and the peer route refuses a request whose
  connection did not present one (`peer_certificate_middleware`). The HMAC signature with
  CLUSTER_SECRET is checked in any case: TLS protects the wire and proves CA membership,
  the signature proves the sender knows the cluster secret.
- With mutual TLS, a peer's certificate also binds its node id: a message is accepted only
  from a node the certificate names (`certificate_node_ids`), so one node's certificate
  cannot speak for another.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from jobnode.core.settings import NODE_ID_URI_PREFIX, ConfigError, Settings
from jobnode.core.errors import Unauthorized

PEER_PATH_PREFIX = "/internal/"
PEM = "a readable PEM file"


@dataclass(frozen=True)
class TlsContexts:
    """The node's server context (its port) and peer client context; both None with TLS off."""

    server: ssl.SSLContext | None = None
    peer_client: ssl.SSLContext | None = None
    mutual: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsContexts:
        if not settings.tls_enabled:
            return cls()
        assert settings.tls_cert_file is not None and settings.tls_key_file is not None  # Settings checked
        ca_file = settings.tls_ca_file
        server = server_context(settings.tls_cert_file, settings.tls_key_file, ca_file)
        client = peer_client_context(ca_file, settings.tls_cert_file, settings.tls_key_file)
        return cls(server=server, peer_client=client, mutual=ca_file is not None)


def server_context(cert_file: Path, key_file: Path, ca_file: Path | None) -> ssl.SSLContext:
    """The context of the node's port; with a CA it asks clients for certificates (optional)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, cert_file, key_file)
    if ca_file is not None:
        _load_ca(context, ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def peer_client_context(ca_file: Path | None, cert_file: Path | None = None,
                        key_file: Path | None = None) -> ssl.SSLContext:
    """The context peers are reached with: verify them (host name included); present our pair with a CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        _load_ca(context, ca_file)
        if cert_file is not None and key_file is not None:
            _load_pair(context, cert_file, key_file)
    return context


def _load_pair(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    def no_passphrase() -> str:
        # Without this OpenSSL would prompt on the terminal, and a daemon would hang at start.
        raise ConfigError("TLS_KEY_FILE", str(key_file), "an unencrypted PEM private key (protect it with file "
                          "permissions)", reason="the key is encrypted with a passphrase")

    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file), password=no_passphrase)
    except ssl.SSLError as exc:
        # OpenSSL cannot say which of the two files is at fault; the reason usually can.
        raise ConfigError("TLS_CERT_FILE", str(cert_file), f"{PEM} whose key is TLS_KEY_FILE ({key_file})",
                          reason=f"the certificate and key do not load: {exc.reason or exc}") from None
    except OSError as exc:
        raise ConfigError("TLS_CERT_FILE", str(cert_file), PEM, reason=exc.strerror or str(exc)) from None


def _load_ca(context: ssl.SSLContext, ca_file: Path) -> None:
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("TLS_CA_FILE", str(ca_file), "a readable PEM file of CA certificates",
                          reason=f"it does not load: {reason}") from None


def presented_certificate(request: web.Request) -> bool:
    """Whether this request's connection presented a client certificate the CA vouches for."""
    transport = request.transport
    return bool(transport is not None and transport.get_extra_info("peercert"))


def certificate_node_ids(request: web.Request) -> frozenset[str] | None:
    """The node ids the connection's client certificate vouches for; None without one (no mutual TLS).

    A certificate names its node by a URI SAN `urn:jobnode:node:<id>` (what `jobnode cert` writes);
    when it has none, by its DNS SANs, each read both whole and by its first label
    (node-2.cluster.example names node-2), which is how certificates from an operator's CA
    usually look.
    """
    transport = request.transport
    certificate = transport.get_extra_info("peercert") if transport is not None else None
    if not certificate:
        return None
    names = certificate.get("subjectAltName", ())
    explicit = {value[len(NODE_ID_URI_PREFIX):] for kind, value in names
                if kind == "URI" and value.startswith(NODE_ID_URI_PREFIX)}
    if explicit:
        return frozenset(explicit)
    dns = [value for kind, value in names if kind == "DNS"]
    return frozenset(dns) | frozenset(value.split(".", 1)[0] for value in dns)


@web.middleware
async def peer_certificate_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """With mutual TLS, the peer route serves only connections that presented a CA-signed certificate."""
    if request.path.startswith(PEER_PATH_PREFIX) and not presented_certificate(request):
        raise Unauthorized("peer requests must come over a connection with a client certificate "
                           "signed by TLS_CA_FILE (mutual TLS between peers)")
    return await handler(request)
