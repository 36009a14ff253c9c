"""Is a signed security.txt signed by its owner? Checked against the keys the owner publishes.

The signer's key is looked for where only the owner can put it: an ``Encryption`` URL on the
file's own origin, and the Web Key Directory of each mailto Contact's domain. The answer is a
sentence for the record: "verified by fingerprint X (key from URL)" or "not verified: why".
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from ..addresses import clean_address
from ..errors import SourceError
from ..sources import LookupContext
from .discover import fetch_key, wkd_urls
from .keyring import verify_cleartext

__all__ = ["signature_status"]

_MAX_CANDIDATES = 4


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _candidates(
    final_url: str, encryption: tuple[str, ...], contacts: tuple[str, ...], port: int
) -> list[str]:
    urls: list[str] = []
    here = _origin(final_url)
    for uri in encryption:
        if uri.lower().startswith("https://") and _origin(uri) == here:
            urls.append(uri)
    for uri in contacts:
        address = clean_address(uri) if "@" in uri else None
        if address is not None:
            urls.extend(wkd_urls(address, port))
    return list(dict.fromkeys(urls))[: _MAX_CANDIDATES * 2]


async def signature_status(
    body: bytes,
    final_url: str,
    encryption: tuple[str, ...],
    contacts: tuple[str, ...],
    ctx: LookupContext,
) -> str:
    """A sentence saying whether the cleartext signature of ``body`` verified, and by what key."""
    tried: list[str] = []
    refused: list[str] = []
    port = ctx.settings.http.https_port
    for url in _candidates(final_url, encryption, contacts, port):
        try:
            key = await fetch_key(url, ctx)
        except SourceError:
            continue
        if key is None:
            continue
        tried.append(url)
        result = await asyncio.to_thread(verify_cleartext, body, key)
        if result.valid:
            return f"signature verified by fingerprint {result.fingerprint} (key from {url})"
        refused.append(result.reason)
    if not tried:
        return "signature not verified: key not available"
    return f"signature not verified: {refused[0]} (keys from {', '.join(tried[:2])})"
