"""Finding a recipient's OpenPGP key: security.txt Encryption, contacts.yaml, WKD, a keyserver.

Every fetch goes through ``notifier.net.fetch`` with the run's guarded HTTP client (the SSRF
guard, the ``[http]`` timeout and redirect limits) and a byte cap; answers are kept in the
lookup cache by URL, so a batch asks each directory once. Whatever is found is judged by
``Keyring.check`` for the recipient's address before it is used.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ..addresses import header_text
from ..errors import SourceError, SourceUnavailable
from ..models import Contact
from ..net import fetch
from ..sources import LookupContext
from .keyring import MAX_KEY_BYTES, CheckedKey, KeyRejected, Keyring

__all__ = ["HostFailures", "KeyLookup", "find_key", "wkd_hash", "wkd_urls", "fetch_key"]

_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_FINGERPRINT = re.compile(r"^[0-9A-F]{40}([0-9A-F]{24})?\Z")
_CACHE_KIND = "openpgp-fetch"
_NEGATIVE_TTL = 3600.0


def wkd_hash(local: str) -> str:
    """z-base-32 of the SHA-1 of the lower-cased local part (draft-koch-openpgp-webkey-service)."""
    digest = hashlib.sha1(local.lower().encode("utf-8"), usedforsecurity=False).digest()
    bits = int.from_bytes(digest, "big")
    # 160 bits are exactly 32 groups of 5
    return "".join(_ZBASE32[(bits >> (155 - 5 * i)) & 31] for i in range(32))


def _origin(host: str, port: int) -> str:
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


def wkd_urls(address: str, port: int = 443) -> tuple[str, str]:
    """The advanced and the direct Web Key Directory URLs for ``address``."""
    local, _, domain = address.rpartition("@")
    domain = domain.lower()
    tail = f"hu/{wkd_hash(local)}?l={quote(local, safe='')}"
    advanced = f"{_origin('openpgpkey.' + domain, port)}/.well-known/openpgpkey/{domain}/{tail}"
    direct = f"{_origin(domain, port)}/.well-known/openpgpkey/{tail}"
    return advanced, direct


@dataclass(slots=True)
class KeyLookup:
    """What was found for one address: the key to use, where from, and what was refused."""

    address: str
    key: CheckedKey | None = None
    source: str = ""  # e.g. "wkd https://openpgpkey.example.org/..."
    published: bool = False  # the recipient published a key (usable or not)
    problems: list[str] = field(default_factory=list)


class HostFailures:
    """Key servers that could not be reached in this run: not asked again until it ends.

    A domain's Web Key Directory host that does not resolve, refuses the connection or fails
    TLS fails the same way for every address at that domain; a batch writing to a hundred
    mailboxes at one provider asks it once. Answers (404 included) stay per URL, in the cache.
    """

    def __init__(self) -> None:
        self._failed: dict[str, tuple[type[SourceUnavailable], str]] = {}

    def check(self, url: str) -> None:
        """Raise the host's earlier failure, reworded for ``url``, if it had one."""
        known = self._failed.get(_host(url))
        if known is not None:
            kind, reason = known
            raise kind(f"{url}: {reason}", source="openpgp")

    def note(self, url: str, exc: SourceUnavailable) -> None:
        text = str(exc)
        # only a failure of this URL's own host (not of a host it redirected to)
        if text.startswith(f"{url}: "):
            self._failed[_host(url)] = (type(exc), text.removeprefix(f"{url}: "))


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or 443}"


async def fetch_key(
    url: str, ctx: LookupContext, failures: HostFailures | None = None
) -> bytes | None:
    """The body at ``url`` (https only, capped, cached); None for 404/410 or no answer."""
    cache = ctx.cache
    cached = cache.get(_CACHE_KIND, url) if cache is not None else None
    if isinstance(cached, dict):
        body = cached.get("body")
        return base64.b64decode(body) if isinstance(body, str) else None
    if failures is not None:
        failures.check(url)
    http = ctx.settings.http
    try:
        result = await fetch(
            ctx.http,
            url,
            max_bytes=MAX_KEY_BYTES,
            deadline=http.timeout,
            accept="application/octet-stream, application/pgp-keys, */*",
            max_redirects=http.max_redirects,
            https_only=True,
            source="openpgp",
        )
    except SourceUnavailable as exc:
        if failures is not None:
            failures.note(url, exc)
        raise
    found = result.body if result.status == 200 and result.body else None
    if result.status not in (200, 404, 410):
        raise SourceError(f"{url}: HTTP {result.status}", source="openpgp")
    if cache is not None:
        hours = ctx.settings.pgp.key_cache_hours
        value = {"body": base64.b64encode(found).decode() if found else None}
        cache.put(_CACHE_KIND, url, value, hours * 3600 if found else _NEGATIVE_TTL)
    return found


async def _fetched(
    url: str, ctx: LookupContext, failures: HostFailures | None
) -> bytes | SourceError | None:
    try:
        return await fetch_key(url, ctx, failures)
    except SourceError as exc:
        return exc


async def _try(
    url: str,
    label: str,
    lookup: KeyLookup,
    ctx: LookupContext,
    keyring: Keyring,
    fpr: str = "",
    *,
    failures: HostFailures | None = None,
    fetched: asyncio.Task[bytes | SourceError | None] | None = None,
) -> str:
    """``found``, ``refused`` (an answer that is not a usable key) or ``absent``."""
    data = await (fetched if fetched is not None else _fetched(url, ctx, failures))
    if isinstance(data, SourceError):
        lookup.problems.append(f"{label}: {data}")
        return "absent"
    if data is None:
        return "absent"
    lookup.published = True
    try:
        key = await asyncio.to_thread(keyring.check, data, lookup.address)
    except KeyRejected as exc:
        lookup.problems.append(f"{label} key refused: {exc}")
        return "refused"
    if fpr and key.fingerprint != fpr:
        lookup.problems.append(f"{label} key {key.fingerprint} is not the announced {fpr}")
        return "refused"
    lookup.key = key
    lookup.source = f"{label} {url}"
    return "found"


async def _wkd(
    lookup: KeyLookup,
    ctx: LookupContext,
    keyring: Keyring,
    fpr: str = "",
    failures: HostFailures | None = None,
) -> bool:
    port = ctx.settings.http.https_port
    advanced, direct = wkd_urls(lookup.address, port)
    # both asked at once (each costs DNS and HTTP round trips), judged in the order of the
    # draft: the advanced method's answer, when there is one, is the domain's word
    early = asyncio.ensure_future(_fetched(direct, ctx, failures))
    try:
        outcome = await _try(advanced, "wkd-advanced", lookup, ctx, keyring, fpr, failures=failures)
        if outcome != "absent":
            return outcome == "found"
        outcome = await _try(direct, "wkd-direct", lookup, ctx, keyring, fpr, fetched=early)
        return outcome == "found"
    finally:
        early.cancel()  # not needed once the advanced method answered
        await asyncio.gather(early, return_exceptions=True)


async def _by_fingerprint(
    fpr: str, lookup: KeyLookup, ctx: LookupContext, keyring: Keyring, failures: HostFailures | None
) -> bool:
    if await _wkd(lookup, ctx, keyring, fpr, failures):
        return True
    server = ctx.settings.pgp.keyserver
    if not server:
        lookup.problems.append(f"key {fpr} not in the Web Key Directory and no keyserver set")
        return False
    for url in (
        f"{server}/vks/v1/by-fingerprint/{fpr}",
        f"{server}/pks/lookup?op=get&options=mr&search=0x{fpr}",
    ):
        if await _try(url, "keyserver", lookup, ctx, keyring, fpr, failures=failures) == "found":
            return True
    return False


async def find_key(
    contact: Contact, ctx: LookupContext, keyring: Keyring, failures: HostFailures | None = None
) -> KeyLookup:
    """The key to encrypt to ``contact`` with, or why there is none.

    ``failures``: the run's unreachable key servers, shared by its lookups (none: ask each).
    """
    lookup = KeyLookup(address=contact.address.lower())
    for announced in contact.encryption[:5]:
        text = announced.strip()
        lowered = text.lower()
        if lowered.startswith("https://") and urlsplit(text).hostname:
            lookup.published = True
            if await _try(text, "announced", lookup, ctx, keyring, failures=failures) == "found":
                return lookup
        elif lowered.startswith("openpgp4fpr:"):
            fpr = text.split(":", 1)[1].replace(" ", "").upper()
            lookup.published = True
            if not _FINGERPRINT.match(fpr):
                lookup.problems.append(f"not a fingerprint: {header_text(text, 80)}")
            elif await _by_fingerprint(fpr, lookup, ctx, keyring, failures):
                return lookup
        else:
            lookup.problems.append(f"unsupported Encryption URI: {header_text(text, 80)}")
    if ctx.settings.pgp.wkd and not lookup.key:
        await _wkd(lookup, ctx, keyring, failures=failures)
    return lookup
