"""Outbound safety: the hub calls only hosts a tenant has allowed, never link-local or cloud
metadata addresses, whatever a name resolves to. Connectors and webhooks ask here first.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import idna

from hub.errors import OutboundRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# addresses no council back office lives at, and where cloud metadata services answer
_BLOCKED_NETWORKS: list[IPNetwork] = [
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS, Azure, GCP, OpenStack metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::/32",  # AWS IMDS over IPv6 (fd00:ec2::254)
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this host": Linux connects it to loopback
        "::/128",
        "224.0.0.0/4",  # multicast
        "ff00::/8",
        "255.255.255.255/32",
    )
]
_BLOCKED_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible IPv6, ::a.b.c.d
# what inet_aton takes as IPv4 besides dotted quads: 2852039166, 0xa9fea9fe, 169.254.43518
_LEGACY_V4 = re.compile(r"[0-9a-fx.]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_OTHER_PORTS = {"amqp": 5672, "pyamqp": 5672, "amqps": 5671, "smtp": 25, "smtps": 465}
# broker URLs that stay inside the process or on its disk
_LOCAL_SCHEMES = frozenset({"memory", "filesystem", "sqlite", "file"})


# -- names and addresses ------------------------------------------------------------------


def ip_literal(host: str) -> IPAddress | None:
    """The address a host string stands for by itself, in every form the resolver accepts."""
    text = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def normal_host(host: str) -> str:
    """Lower case, no brackets or trailing dot, an address in its canonical form and an
    international name in its IDNA (xn--) form, so one name cannot pass in two spellings."""
    name = host.strip().strip("[]").rstrip(".")
    literal = ip_literal(name)
    if literal is not None:
        return str(literal)
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise OutboundRefused(f"{host!r} is not a valid host name") from None


def blocked_address(address: str | IPAddress) -> bool:
    """True for link-local and metadata addresses, also when wrapped in an IPv6 address."""
    ip = ip_literal(address) if isinstance(address, str) else address
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner: IPAddress | None = ip.ipv4_mapped or ip.sixtofour
        if inner is None and (ip in _NAT64 or (ip in _COMPAT and int(ip) > 1)):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and blocked_address(inner):
            return True
    return any(ip.version == net.version and ip in net for net in _BLOCKED_NETWORKS)


def blocked_host(host: str) -> bool:
    name = normal_host(host)
    return name in _BLOCKED_NAMES or blocked_address(name)


# -- allow-lists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    kind: Literal["any", "name", "suffix", "network"]
    value: str
    network: IPNetwork | None
    port: int | None


@lru_cache(maxsize=1024)
def parse_pattern(pattern: str) -> _Pattern | None:
    """"host", "host:port", "*.example.org[:port]" (sub-domains), "[v6][:port]", "a.b.c.d[:port]",
    a network such as "10.20.0.0/16", or "*" (any host); None when it is none of these."""
    text, port = pattern.strip(), None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        text, port = inside, int(rest[1:]) if rest else None
    elif text.count(":") == 1:
        text, _, digits = text.partition(":")
        if not re.fullmatch(r"\d{1,5}", digits):
            return None
        port = int(digits)
    if port is not None and not 0 < port < 65536:
        return None
    if text == "*":
        return _Pattern("any", "*", None, port)
    if "/" in text:
        try:
            return _Pattern("network", text, ipaddress.ip_network(text, strict=False), port)
        except ValueError:
            return None
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    if not body or any(c in body for c in "*/@ \\?#") or (":" in body and ip_literal(body) is None):
        return None
    try:
        name = normal_host(body)
    except OutboundRefused:
        return None
    if wildcard:
        return None if ip_literal(body) is not None else _Pattern("suffix", "." + name, None, port)
    return _Pattern("name", name, None, port)


def _matches(pattern: _Pattern, name: str, port: int | None) -> bool:
    if pattern.port is not None and pattern.port != port:
        return False
    if pattern.kind == "any":
        return True
    if pattern.kind == "suffix":
        return name.endswith(pattern.value) and ip_literal(name) is None
    if pattern.kind == "network":
        ip = ip_literal(name)
        return ip is not None and pattern.network is not None and ip.version == pattern.network.version and ip in pattern.network
    return pattern.value == name


@dataclass(frozen=True)
class AllowList:
    """Host patterns (see `parse_pattern`) that `owner` allows. A host must also be on every
    list in `also`: a connector shared by several tenants calls only what all of them allow."""

    patterns: tuple[str, ...]
    owner: str = "this tenant"
    also: tuple[AllowList, ...] = ()

    def refuser(self, host: str, port: int | None) -> str | None:
        """The owner of the first list that does not allow host:port; None when all allow it."""
        name = normal_host(host)
        parsed = [p for p in (parse_pattern(text) for text in self.patterns) if p is not None]
        if not any(_matches(pattern, name, port) for pattern in parsed):
            return self.owner
        for other in self.also:
            if (refused := other.refuser(name, port)) is not None:
                return refused
        return None

    def allows(self, host: str, port: int | None) -> bool:
        return self.refuser(host, port) is None


# built without a tenant (a connector made outside the runtime): any host, but never a blocked one
UNRESTRICTED = AllowList(("*",), owner="no tenant")


def pattern_problems(patterns: Iterable[str]) -> list[str]:
    return [f"{text!r} is not a host, host:port, *.domain, [IPv6] or network" for text in patterns if parse_pattern(text) is None]


def allow_list_for(tenant_lists: Iterable[tuple[str, ...] | AllowList]) -> AllowList:
    """A connector serving several tenants may call a host only if every one of them allows it."""
    lists = [item if isinstance(item, AllowList) else AllowList(tuple(item)) for item in tenant_lists]
    if not lists:
        return AllowList((), owner="any tenant")
    return AllowList(lists[0].patterns, lists[0].owner, (*lists[0].also, *lists[1:]))


# -- checks ---------------------------------------------------------------------------------


def check_host(host: str, port: int | None, allow: AllowList, resolve: bool = True) -> None:
    """Raises OutboundRefused unless the host is allow-listed and resolves only to safe addresses."""
    name = normal_host(host)
    if name in _BLOCKED_NAMES or blocked_address(name):
        raise OutboundRefused(f"host {name} is a link-local or cloud metadata address, which the hub never calls")
    refused_by = allow.refuser(name, port)
    if refused_by is not None:
        raise OutboundRefused(f"host {name} is not on {refused_by}'s allowed_hosts")
    if resolve:
        try:
            safe_addresses(name, port)
        except OSError:
            return  # the call itself will fail and be retried: an unknown name is not a policy matter


def safe_addresses(host: str, port: int | None) -> list[str]:
    """Resolves a name and returns its addresses, refusing it if any is link-local or metadata
    (DNS may change after configuration). Raises OSError when the name does not resolve."""
    name = normal_host(host)
    infos = socket.getaddrinfo(name, port or 0, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if blocked_address(address):
            raise OutboundRefused(f"host {name} resolves to {address}, a link-local or metadata address, which the hub never calls")
        if address not in addresses:
            addresses.append(address)
    return addresses


def url_host_port(url: str) -> tuple[str, int | None]:
    """The host and effective port of an http(s) URL; OutboundRefused for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"{url!r} has an invalid port") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise OutboundRefused(f"{url!r} is not an http(s) URL")
    return parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def check_url(url: str, allow: AllowList, resolve: bool = True) -> None:
    host, port = url_host_port(url)
    check_host(host, port, allow, resolve)


def network_hosts(url: str) -> list[tuple[str, int | None]]:
    """The hosts any URL (a broker's, with `;` between fail-over URLs) reaches over the network:
    none for `memory://`; "localhost" where the URL names no host, as kombu does."""
    hosts: list[tuple[str, int | None]] = []
    for one in url.split(";"):
        parts = urlsplit(one.strip())
        if not parts.scheme or parts.scheme in _LOCAL_SCHEMES:
            continue
        try:
            port = parts.port
        except ValueError:
            raise OutboundRefused(f"a {parts.scheme} URL has an invalid port") from None
        default = _DEFAULT_PORTS.get(parts.scheme) or _OTHER_PORTS.get(parts.scheme)
        hosts.append((parts.hostname or "localhost", port or default))
    return hosts


# -- the allow-list a connector is being built with -------------------------------------------

_building: ContextVar[AllowList] = ContextVar("outbound_allow_list", default=UNRESTRICTED)


@contextmanager
def building_with(allow: AllowList) -> Iterator[None]:
    """The registry builds each connector inside this, so the connector and every HTTP client or
    WSDL loader it makes take its tenants' allow-list, whatever package the connector comes from."""
    token = _building.set(allow)
    try:
        yield
    finally:
        _building.reset(token)


def current_allow_list() -> AllowList:
    return _building.get()
