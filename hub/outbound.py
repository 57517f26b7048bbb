"""Outbound safety: the hub calls only hosts a tenant has allowed, never link-local or cloud
metadata addresses, whatever a name resolves to. Connectors and webhooks ask here first.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from hub.errors import PermanentError

# addresses no council back office lives at, and where cloud metadata services answer
_BLOCKED_NETWORKS = [
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS, Azure, GCP metadata)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::/32",  # AWS IMDS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
    )
]
_BLOCKED_NAMES = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}


class OutboundRefused(PermanentError):
    """The hub will not call this address: not allow-listed, or link-local / metadata."""


@dataclass(frozen=True)
class AllowList:
    """Host patterns: "host", "host:port", "*.example.org" (any sub-domain), "*" (any host)."""

    patterns: tuple[str, ...]

    def allows(self, host: str, port: int | None) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.patterns:
            pattern = pattern.lower()
            want_host, _, want_port = pattern.rpartition(":") if _has_port(pattern) else (pattern, "", "")
            if want_port and port is not None and str(port) != want_port:
                continue
            if want_port and port is None:
                continue
            if want_host == "*" or want_host == host:
                return True
            if want_host.startswith("*.") and host.endswith(want_host[1:]):
                return True
        return False


def _has_port(pattern: str) -> bool:
    head, sep, tail = pattern.rpartition(":")
    return bool(sep) and tail.isdigit() and "]" not in tail and head.count(":") == 0


def blocked_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _BLOCKED_NETWORKS)


def check_host(host: str, port: int | None, allow: AllowList, resolve: bool = True) -> None:
    """Raises OutboundRefused unless the host is allow-listed and resolves only to safe addresses."""
    name = host.strip("[]").lower().rstrip(".")
    if name in _BLOCKED_NAMES or blocked_address(name):
        raise OutboundRefused(f"{name} is a link-local or cloud metadata address; the hub never calls it")
    if not allow.allows(name, port):
        raise OutboundRefused(f"{name} is not on this tenant's list of allowed hosts")
    if resolve:
        try:
            infos = socket.getaddrinfo(name, port or 0, proto=socket.IPPROTO_TCP)
        except OSError:
            return  # the call itself will fail and be retried: an unknown name is not a policy matter
        for info in infos:
            if blocked_address(str(info[4][0])):
                raise OutboundRefused(f"{name} resolves to a link-local or metadata address; the hub never calls it")


def check_url(url: str, allow: AllowList, resolve: bool = True) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{url!r} is not an http(s) URL")
    check_host(parts.hostname, parts.port, allow, resolve)


def allow_list_for(tenant_lists: Iterable[tuple[str, ...]]) -> AllowList:
    """A connector serving several tenants may call a host only if every one of them allows it."""
    lists = [set(patterns) for patterns in tenant_lists]
    if not lists:
        return AllowList(())
    common = set.intersection(*lists)
    return AllowList(tuple(sorted(common)))
