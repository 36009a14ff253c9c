"""The ledger: the hash-chained evidence of everything notifier did, and what it tells.

Writing
    ``ledger = open_ledger(settings, clock=...)`` -> a :class:`Ledger` (the file store under
    ``state.dir``, or PostgreSQL when ``[state] url`` names a database).
    ``ledger.write(Intent(...))`` writes a typed record (``records.py``: one class per event
    kind); ``ledger.append("intent", **fields)`` does the same from keyword fields, checked
    against that class. ``GroupCommit(ledger)`` lets concurrent tasks share one write and one
    sync: ``await group.append(event, **fields)``, ``await group.append_if(guard, ...)`` (the
    guard runs under the store's lock: check-then-claim across processes).
    ``ledger.store_message(raw) -> digest`` keeps the exact bytes of a message;
    ``ledger.load_message(digest)``; ``await ledger.timestamp(url, http, timeout=...)``
    anchors the head with an RFC 3161 TSA.

Reading (the read model)
    ``view = ledger.view()``; ``model = view.refresh()`` -> :class:`ReadModel`, brought up to
    date with what any process appended since the last refresh. It answers:

    - ``model.prior(finding_key, recipient)`` -> "delivered" | "in-doubt" | None
    - ``model.delivered`` (set of (finding key, recipient)), ``model.in_doubt()`` (open
      :class:`Intent` records), ``model.in_doubt_pairs()``
    - ``model.is_suppressed(address)``, ``model.suppressed``
    - ``model.sent_since(recipient, moment)`` (the daily cap's count)
    - ``model.cases`` / ``model.case(ref)`` -> :class:`CaseState` (ips, findings, messages as
      :class:`MessageState` with status in-doubt/delivered/failed and ``bounced``, followups,
      acked, bounces, fallbacks, timeline of typed records, ``state`` for reviews,
      ``last_notice()``); ``model.message(message_id)``, ``model.attempts[attempt_id]``
    - ``model.resolutions[ip]`` (the latest :class:`~records.Resolution`), ``model.dsn_ids``,
      ``model.bounces()``, ``model.refusals``, ``model.aliases``
    - for follow-ups and bounce fallbacks: ``model.due(now=, after_days=)``,
      ``model.attempt(id)``, ``model.by_verp(id)``, a case's ladder (``contacts_at(case,
      level)``, ``fallbacks(case)``, ``findings_for(case, contact)``, ``network(case)``,
      ``resolution(case)``; ``casestate.py``), ``case.rebuilt`` (its findings as
      :class:`~notifier.models.Finding`, from structured or older text-only intents) and
      ``model.note_delivery(...)`` for a run's own sends
    ``ReadModel.of(records)`` folds any iterable of records (an exported file, say).

Checking
    ``ledger.verify(head=..., public_key=..., tsa_trust=...)`` -> :class:`VerifyReport`; it
    also checks completeness: every stored message is accounted for by an intent, and the log
    is not shorter than any head it published (in stored messages' ``X-Notifier-Log-Head``,
    time-stamp tokens and anchors). ``verify(path, ...)`` checks an exported or copied file.
    ``ledger.export("jsonl", out)`` writes the chain as JSON Lines (verifiable offline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Ledger, LiveView
from .chain import GENESIS, LOG_NAME, Clock, Record, format_head, parse_head, record_hash
from .fileio import TornTail, head
from .files import AuditLog
from .group import GroupCommit
from .keys import key_id, load_signing_key, load_verify_key
from .readmodel import CaseState, MessageState, ReadModel, normalise_case
from .records import EVENTS, Entry, Intent, Outcome
from .timestamps import (
    TimestampToken,
    build_timestamp_request,
    parse_timestamp_reply,
    timestamp_head,
)
from .verify import Problem, VerifyReport, verify

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "EVENTS",
    "GENESIS",
    "LOG_NAME",
    "AuditLog",
    "CaseState",
    "Clock",
    "Entry",
    "GroupCommit",
    "Intent",
    "Ledger",
    "LiveView",
    "MessageState",
    "Outcome",
    "Problem",
    "ReadModel",
    "Record",
    "TimestampToken",
    "TornTail",
    "VerifyReport",
    "build_timestamp_request",
    "format_head",
    "head",
    "key_id",
    "load_signing_key",
    "load_verify_key",
    "normalise_case",
    "open_ledger",
    "parse_head",
    "parse_timestamp_reply",
    "record_hash",
    "timestamp_head",
    "verify",
]


def open_ledger(settings: Settings, *, clock: Clock) -> Ledger:
    """The ledger the settings name; outcomes are signed when ``audit.signing_key`` is set."""
    key_file = settings.audit.signing_key
    signer = load_signing_key(key_file) if key_file else None
    if settings.state.url:
        from .pg import PgLedger  # psycopg is loaded only by those who use the database

        return PgLedger(settings.state.url, clock=clock, signer=signer)
    return AuditLog(settings.state_dir / LOG_NAME, clock=clock, signer=signer)
