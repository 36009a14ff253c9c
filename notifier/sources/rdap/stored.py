"""A fetched bootstrap file kept on disk with its answer's HTTP caching headers (RFC 9111):
until when it is fresh, and the validators that revalidate it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from .. import LookupContext

__all__ = ["Stored", "freshness", "load_stored", "store"]

_MAX_HEURISTIC = timedelta(days=1)
_DEFAULT_FRESH = timedelta(hours=1)
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\b", re.IGNORECASE)


def freshness(headers: httpx.Headers | dict[str, str], now: datetime) -> datetime:
    """Until when an answer with ``headers`` may be used without asking again (RFC 9111 §4.2)."""
    lower = {k.lower(): v for k, v in headers.items()}
    control = lower.get("cache-control", "")
    if _NO_CACHE.search(control):
        return now
    age = lower.get("age", "0")
    already = int(age) if age.isdigit() else 0
    match = _MAX_AGE.search(control)
    if match:
        return now + timedelta(seconds=max(0, int(match.group(1)) - already))
    expires = _http_date(lower.get("expires", ""))
    if "expires" in lower:
        date = _http_date(lower.get("date", "")) or now
        return now + (expires - date) if expires is not None else now
    modified = _http_date(lower.get("last-modified", ""))
    if modified is not None and modified < now:
        return now + min((now - modified) / 10, _MAX_HEURISTIC)
    return now + _DEFAULT_FRESH


def _http_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        stamp = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return stamp if stamp.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Stored:
    body: bytes
    fresh_until: datetime
    etag: str
    last_modified: str


def _paths(ctx: LookupContext, url: str) -> tuple[Path, Path]:
    folder = ctx.settings.state_dir / "rdap-bootstrap"
    name = hashlib.sha256(url.encode()).hexdigest()[:24]
    return folder / f"{name}.json", folder / f"{name}.meta.json"


def load_stored(ctx: LookupContext, url: str) -> Stored | None:
    body_path, meta_path = _paths(ctx, url)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        body = body_path.read_bytes()
        if meta.get("url") != url or hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        return Stored(
            body,
            datetime.fromisoformat(meta["fresh_until"]),
            str(meta.get("etag", "")),
            str(meta.get("last_modified", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no copy, or a damaged one: fetched again


def store(ctx: LookupContext, url: str, stored: Stored) -> None:
    body_path, meta_path = _paths(ctx, url)
    body_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    meta = {
        "url": url,
        "sha256": hashlib.sha256(stored.body).hexdigest(),
        "fresh_until": stored.fresh_until.isoformat(),
        "etag": stored.etag,
        "last_modified": stored.last_modified,
    }
    for path, data in ((body_path, stored.body), (meta_path, json.dumps(meta).encode())):
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_bytes(data)
        os.replace(scratch, path)
