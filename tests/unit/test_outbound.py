"""The outbound rules as a council's ICT team writes them in `allowed_hosts`: which hosts pass,
which never do, and how a connector shared by two councils is bound by both lists."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from hub.errors import OutboundRefused
from hub.outbound.guard import AllowList, allow_list_for, check_host, check_url, network_hosts, pattern_problems

EASTMOOR = AllowList(("crm.eastmoor.gov.uk", "*.services.eastmoor.gov.uk", "10.20.0.0/16", "[fd12::7]:8443"), owner="tenant eastmoor")


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.eastmoor.gov.uk/api",
        "https://CRM.Eastmoor.gov.uk./api",  # case and a trailing dot are the same name
        "https://waste.services.eastmoor.gov.uk/x",
        "http://10.20.3.4:8080/soap",
        "https://[fd12::7]:8443/open311",
    ],
)
def test_hosts_on_the_list_pass(url: str) -> None:
    check_url(url, EASTMOOR, resolve=False)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://evil.example/api", "evil.example"),
        ("https://services.eastmoor.gov.uk/", "services.eastmoor.gov.uk"),  # *.x allows sub-domains, not x itself
        ("https://crm.eastmoor.gov.uk.evil.example/", "crm.eastmoor.gov.uk.evil.example"),
        ("http://10.21.0.1/", "10.21.0.1"),
        ("https://[fd12::7]:443/open311", "fd12::7"),  # listed only with port 8443
        ("https://[fd12::8]:8443/", "fd12::8"),
    ],
)
def test_hosts_off_the_list_are_refused_naming_the_host_and_the_tenant(url: str, host: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, EASTMOOR, resolve=False)
    assert refused.value.reason == f"host {host} is not on tenant eastmoor's allowed_hosts"


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "[fe80::1]",
        "fe80::1%eth0",
        "metadata.google.internal",
        "METADATA.google.internal.",
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe",  # NAT64
        "2852039166",  # 169.254.169.254 written as one number
        "0xa9.0xfe.0xa9.0xfe",
        "0.0.0.0",
    ],
)
def test_link_local_and_metadata_addresses_are_refused_even_when_every_host_is_allowed(host: str) -> None:
    with pytest.raises(OutboundRefused, match="link-local or cloud metadata address, which the hub never calls"):
        check_host(host, 80, AllowList(("*",)), resolve=False)


def test_an_international_name_matches_its_idna_form_either_way() -> None:
    unicode_list = AllowList(("crm.westväle.example",))
    ascii_list = AllowList(("crm.xn--westvle-9wa.example",))
    for allow in (unicode_list, ascii_list):
        check_url("https://crm.westväle.example/", allow, resolve=False)
        check_url("https://crm.xn--westvle-9wa.example/", allow, resolve=False)
    check_url("https://crm\uff0ewestväle.example/", unicode_list, resolve=False)  # a full-width dot is a dot
    with pytest.raises(OutboundRefused, match=r"host crm\.xn--westval-hya\.example is not on"):
        check_url("https://crm.westvalé.example/", unicode_list, resolve=False)


def test_a_shared_connector_may_call_only_what_every_tenant_allows_and_star_narrows_to_the_other_list() -> None:
    eastmoor = AllowList(("*",), owner="tenant eastmoor")
    westvale = AllowList(("*.westvale.gov.uk", "shared.example.org"), owner="tenant westvale")
    shared = allow_list_for([eastmoor, westvale])
    assert shared.allows("crm.westvale.gov.uk", 443)
    assert shared.allows("shared.example.org", 443)
    with pytest.raises(OutboundRefused, match="host evil.example is not on tenant westvale's allowed_hosts"):
        check_host("evil.example", 443, shared, resolve=False)
    # lists given as plain patterns, as the old signature took them
    assert allow_list_for([("*",), ("crm.example.org",)]).allows("crm.example.org", 80)
    assert not allow_list_for([("a.example.org",), ("b.example.org",)]).allows("a.example.org", 80)
    assert not allow_list_for([]).allows("a.example.org", 80)


def test_entries_that_are_not_hosts_are_reported() -> None:
    problems = pattern_problems(["crm.example.org", "https://crm.example.org/", "*.*.example.org", "[::1", "host:99999", "10.0.0.0/33"])
    assert problems == [
        "'https://crm.example.org/' is not a host, host:port, *.domain, [IPv6] or network",
        "'*.*.example.org' is not a host, host:port, *.domain, [IPv6] or network",
        "'[::1' is not a host, host:port, *.domain, [IPv6] or network",
        "'host:99999' is not a host, host:port, *.domain, [IPv6] or network",
        "'10.0.0.0/33' is not a host, host:port, *.domain, [IPv6] or network",
    ]


def test_a_name_that_resolves_to_a_metadata_address_is_refused_when_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "crm.eastmoor.gov.uk":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    check_url("https://crm.eastmoor.gov.uk/", EASTMOOR, resolve=False)  # offline, the name itself is fine
    with pytest.raises(OutboundRefused, match="host crm.eastmoor.gov.uk resolves to 169.254.169.254"):
        check_url("https://crm.eastmoor.gov.uk/", EASTMOOR)


def test_broker_urls_name_their_hosts_and_an_in_process_broker_has_none() -> None:
    assert network_hosts("amqp://hub:secret@rabbit.eastmoor.gov.uk:5672/%2F") == [("rabbit.eastmoor.gov.uk", 5672)]
    assert network_hosts("amqps://a;amqp://[fd12::7]/v") == [("a", 5671), ("fd12::7", 5672)]
    assert network_hosts("amqp://") == [("localhost", 5672)]
    assert network_hosts("memory://") == []
