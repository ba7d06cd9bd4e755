"""Where a webhook may go: the public internet only (OWASP API7, server-side request forgery).

A merchant names a URL and the gateway POSTs to it, from inside the operator's network.
Without a check, a merchant could make the gateway reach what only it can reach: its
own loopback services, the cloud's metadata service at 169.254.169.254, databases on
private networks. So a webhook host must be a public address or a name for public
addresses, checked twice:

- at registration (gateway.http.api.webhooks), `host_refusal` over the URL as written, then
  `address_refusal` over what the name resolves to now (a name that does not resolve
  yet is accepted: it is checked again at every delivery);
- at delivery (gateway.http.delivery.http_post), after resolving the name again, since DNS
  can change: every address the name has must be public, and the connection goes to
  one of those very addresses, never to a second lookup's answer.

An address is refused in every spelling a resolver accepts: 127.1, 2130706433,
0x7f000001, 017700000001 (inet_aton's forms), [::1], [::ffff:127.0.0.1], and IPv6
addresses that carry an IPv4 one (IPv4-mapped, 6to4, NAT64). Refused: loopback,
private (RFC 1918, fc00::/7), link-local (169.254.0.0/16, fe80::/10), unspecified
(0.0.0.0, ::), shared (100.64.0.0/10), multicast, reserved and documentation ranges:
whatever Python's ipaddress does not call global.

Config.allow_private_webhooks (`--allow-private-webhooks`) turns the check off, for a
developer's machine and the tests, whose receivers listen on 127.0.0.1.

Pure functions over names and addresses; `resolve` is the only I/O.
"""
from __future__ import annotations

import ipaddress
import re
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that are never on the public internet (RFC 6761, RFC 6762, RFC 8375, common practice).
LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".intranet", ".lan", ".home.arpa")
_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def literal_address(host: str) -> Address | None:
    """host as an IP address, if it is one in any spelling: ipaddress's, or inet_aton's
    shortened, decimal, hex and octal IPv4 forms, which resolvers accept too."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9A-Fa-fXx.]+", host):  # inet_aton also takes trailing garbage
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _carried(address: Address) -> list[Address]:
    """The address and any IPv4 address an IPv6 one carries."""
    found = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            found.append(address.ipv4_mapped)
        if address.sixtofour:
            found.append(address.sixtofour)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _kind(address: Address) -> str:
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def address_refusal(address: Address) -> str | None:
    """Why a webhook may not go to this address; None if it may."""
    for carried in _carried(address):
        if not carried.is_global or carried.is_multicast:
            shown = str(address) if carried == address else f"{address} (carrying {carried})"
            return f"{shown} is a {_kind(carried)} address, not a public one"
    return None


def host_refusal(host: str) -> str | None:
    """Why a URL's host (as urlsplit gives it, lower case, no brackets) is not a public
    webhook target; None if it may be one (a name is checked again once resolved)."""
    address = literal_address(host)
    if address is not None:
        return address_refusal(address)
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(LOCAL_SUFFIXES):
        return f"{host} is a local name"
    if not _NAME.fullmatch(name):
        return f"{host} is not a public domain name (letters, digits and hyphens, with a dot; " \
               "an international name in its xn-- form)"
    return None


def addresses_refusal(addresses: list[Address]) -> str | None:
    """Why a name with these addresses is refused: any one of them that is not public
    (a connection could reach any of them)."""
    if not addresses:
        return "the name has no address"
    for address in addresses:
        reason = address_refusal(address)
        if reason:
            return reason
    return None


def resolve(host: str, port: int) -> list[Address]:
    """The addresses host:port resolves to now, in the resolver's order; OSError if none."""
    found = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found
