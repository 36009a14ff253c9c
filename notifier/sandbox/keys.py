"""OpenPGP keys and DKIM records on the loopback internet: WKD entries and DNS TXT records."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..trust.discover import wkd_urls
from .dns import DNSServer
from .web import Reply, WebServer

__all__ = ["publish_wkd", "publish_dkim"]


def publish_wkd(web: WebServer, address: str, key: bytes, *, advanced: bool = False) -> str:
    """Serve ``key`` (binary OpenPGP) as ``address``'s Web Key Directory entry; its URL."""
    url = wkd_urls(address, web.port)[0 if advanced else 1]
    parts = urlsplit(url)
    web.route(
        parts.path,
        Reply(200, key, {"Content-Type": "application/octet-stream"}),
        host=parts.hostname,
    )
    return url


def publish_dkim(dns: DNSServer, selector: str, domain: str, record: str) -> str:
    """Publish a DKIM public-key record at ``SELECTOR._domainkey.DOMAIN``; the name."""
    name = f"{selector}._domainkey.{domain}"
    dns.add(name, "TXT", record)
    return name
