"""Where the `http` processor may connect: a policy over IP addresses, applied after DNS.

A URL check cannot stop server-side request forgery: a name can resolve to 127.0.0.1, a
public host can redirect to 169.254.169.254, and a DNS answer can change between a check and
the connect. So the decision is made on the address actually dialled, twice over:

- `PolicyResolver` wraps the DNS resolver and refuses a name when any address it resolves to is
  refused (the connector only ever dials addresses its resolver returned);
- `policy_socket_factory` checks the socket address of every connect, which also covers IP
  literals (aiohttp does not ask the resolver about those) and every redirect hop.

By default loopback, private, link-local, shared (CGNAT), multicast, unspecified, reserved and
documentation ranges are refused, in IPv4 and IPv6 alike; an IPv6 form that embeds an IPv4
address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, 6to4, NAT64) is judged by that IPv4
address. `HTTP_PROCESSOR_DENY` refuses further networks and wins over `HTTP_PROCESSOR_ALLOW`,
which opens networks the defaults refuse (an internal webhook receiver, say).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DESTINATION_NOT_ALLOWED = "destination not allowed"

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class DestinationRefused(OSError):
    """A connection the destination policy forbids; an OSError so aiohttp's connector passes it on."""

    def __init__(self, address: str) -> None:
        super().__init__(DESTINATION_NOT_ALLOWED)
        self.address = address  # for the node's log only: the job's error never names it


def effective_address(address: IPAddress) -> IPAddress:
    """The address a packet really goes to: the IPv4 address an IPv6 form embeds, else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def refused_by_default(address: IPAddress) -> bool:
    """True for every range that is not the public internet."""
    if address.is_multicast or address.is_unspecified or address.is_loopback or address.is_link_local:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        return True
    return not address.is_global


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR texts (a bare address means just that address) as networks; ValueError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry.strip()!r} is not an IP address or CIDR network") from None
    return tuple(networks)


class DestinationPolicy:
    """Decides whether the `http` processor may connect to an IP address."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = parse_networks(allow)
        self.deny = parse_networks(deny)

    @classmethod
    def from_settings(cls, settings: Any) -> DestinationPolicy:
        return cls(settings.http_processor_allow or (), settings.http_processor_deny or ())

    def allows(self, address: str | IPAddress) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
        except ValueError:
            return False  # not an address at all: nothing to judge, so no connection
        forms = {ip, effective_address(ip)}
        if any(form in network for form in forms for network in self.deny if form.version == network.version):
            return False
        target = effective_address(ip)
        if any(target in network for network in self.allow if target.version == network.version):
            return True
        return not any(refused_by_default(form) for form in forms)

    def check(self, address: str) -> None:
        if not self.allows(address):
            raise DestinationRefused(address)


class PolicyResolver(AbstractResolver):
    """A resolver that refuses a name when any of its addresses is refused by the policy.

    All or nothing on purpose: a name that resolves to one public and one internal address is
    either misconfigured or an attack, and trying only the public one would hide it.
    """

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self.inner is None:
            self.inner = aiohttp.DefaultResolver()
        results = await self.inner.resolve(host, port, family)
        for result in results:
            self.policy.check(result["host"])
        return results

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


def policy_socket_factory(policy: DestinationPolicy) -> Any:
    """A socket factory for aiohttp's connector that refuses to create a socket for a refused address."""

    def make_socket(addr_info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto, _canonical, sockaddr = addr_info
        policy.check(sockaddr[0])
        return socket.socket(family=family, type=kind, proto=proto)

    return make_socket


def guarded_connector(policy: DestinationPolicy, resolver: AbstractResolver | None = None) -> aiohttp.TCPConnector:
    """A connector that dials only addresses the policy allows."""
    return aiohttp.TCPConnector(
        resolver=PolicyResolver(policy, resolver), socket_factory=policy_socket_factory(policy)
    )


def refusal_in(exc: BaseException) -> DestinationRefused | None:
    """The policy refusal behind an aiohttp error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DestinationRefused):
            return current
        seen.add(id(current))
        nested = getattr(current, "os_error", None) if isinstance(current, aiohttp.ClientConnectorError) else None
        current = nested or current.__cause__ or current.__context__
    return None
