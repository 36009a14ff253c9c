"""Answers kept between lookups and between runs: by name, and by address range.

A batch run asks about many addresses in the same few networks; the registry is asked once per
network and every later address in it is answered from here. ``LookupCache`` implements the
``Cache`` protocol of ``notifier.sources`` with an in-memory layer in front of a store: one
SQLite file (``<state.dir>/cache.sqlite``) by default, or the PostgreSQL database named by
``[state] url``, where every process on every machine shares the answers and sees what the
others are fetching right now.
"""

from __future__ import annotations

from .codec import JSON_CODEC, REPORTS_CODEC, Codec, dump_reports, load_reports
from .core import CACHE_FILE, EventHook, LookupCache
from .protocol import Store, StoreError
from .stats import CacheStats, new_holder
from .store import SqliteStore

__all__ = [
    "CACHE_FILE",
    "JSON_CODEC",
    "REPORTS_CODEC",
    "CacheStats",
    "Codec",
    "EventHook",
    "LookupCache",
    "SqliteStore",
    "Store",
    "StoreError",
    "dump_reports",
    "load_reports",
    "new_holder",
]
