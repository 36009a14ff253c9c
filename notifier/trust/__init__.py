"""Messages recipients can trust: OpenPGP encryption and signature, DKIM.

``MessageGuard.protect`` is the one seam the pipeline calls, after compose and before the intent
is logged: it finds the recipient's key, wraps the message in PGP/MIME (signed with
``[pgp] signing_key``, encrypted when a usable key exists and ``[pgp] encrypt`` is on), then
DKIM-signs the final bytes. What it did, and why it did not encrypt, goes into the intent record.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..compose import ComposedMessage
from ..config import Settings
from ..errors import ConfigError, NotifierError
from ..models import Contact
from ..sources import LookupContext
from .discover import HostFailures, KeyLookup, find_key
from .dkim import DKIMSigner
from .keyring import Keyring
from .pgpmime import wrap

__all__ = ["KEYS_AHEAD", "MessageGuard", "Protection", "EncryptionRequired"]

# recipients' key lookups under way at once ahead of their messages: enough to keep ahead of
# the sending, few enough that the lookups a batch still runs keep their connections
KEYS_AHEAD = 32


class EncryptionRequired(NotifierError):
    """``[pgp] require_encryption`` is on and the recipient's published key cannot be used."""


@dataclass(slots=True)
class Protection:
    """What was done to one message, for the audit log."""

    encrypted_to: str = ""  # fingerprint
    key_source: str = ""
    signed_by: str = ""  # fingerprint of our signing key
    dkim: str = ""  # "d=example.org s=sel1"
    problems: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "encrypted_to": self.encrypted_to or None,
            "key_source": self.key_source or None,
            "signed_by": self.signed_by or None,
            "dkim": self.dkim or None,
            "not_encrypted_because": self.problems or None,
        }


class MessageGuard:
    """One per run: the keyring, the DKIM key, and the keys already looked up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        pgp = settings.pgp
        self._keyring: Keyring | None = None
        self._lookups: dict[str, asyncio.Task[KeyLookup]] = {}
        self._ahead: deque[Contact] = deque()  # recipients whose lookup waits for a place
        self._running = 0  # lookups started from ``ahead`` and not yet done
        self._unreachable = HostFailures()
        self.dkim = DKIMSigner.load(settings.dkim) if settings.dkim.enabled else None
        if pgp.signing_key or pgp.encrypt:
            try:
                self._keyring = Keyring()
            except ConfigError:
                if pgp.signing_key or pgp.require_encryption:
                    raise
                # no gpg here: nothing can be encrypted; said per message in the log
        if pgp.signing_key:
            assert self._keyring is not None
            passphrase = os.environ.get(pgp.passphrase_env) if pgp.passphrase_env else None
            if pgp.passphrase_env and passphrase is None:
                self.close()
                raise ConfigError(f"[pgp] passphrase_env: variable {pgp.passphrase_env} is not set")
            try:
                self._keyring.load_signer(pgp.signing_key, passphrase)
            except ConfigError:
                self.close()
                raise

    @property
    def active(self) -> bool:
        return self._keyring is not None or self.dkim is not None or self.settings.pgp.encrypt

    def close(self) -> None:
        if self._keyring is not None:
            self._keyring.close()
            self._keyring = None

    def prefetch(self, contact: Contact, ctx: LookupContext) -> asyncio.Task[KeyLookup] | None:
        """Start looking up the recipient's key now, before its message is sent; the lookup,
        or None when no key is looked for."""
        if self.settings.pgp.encrypt and self._keyring is not None:
            return self._lookup(contact, ctx, self._keyring)
        return None

    def ahead(
        self, contacts: Iterable[Contact], ctx: LookupContext, *, first: bool = False
    ) -> bool:
        """Look up these recipients' keys before their messages are sent, ``KEYS_AHEAD`` at a
        time, in the order given (before those already waiting when ``first``). False when no
        key is looked for in this run."""
        if not (self.settings.pgp.encrypt and self._keyring is not None):
            return False
        fresh = [c for c in contacts if c.address.lower() not in self._lookups]
        if first:
            self._ahead.extendleft(reversed(fresh))
        else:
            self._ahead.extend(fresh)
        self._next(ctx)
        return True

    def stop_ahead(self) -> None:
        """Start no more lookups ahead (those under way finish: their messages may wait on them)."""
        self._ahead.clear()

    def _next(self, ctx: LookupContext) -> None:
        keyring = self._keyring
        while self._ahead and self._running < KEYS_AHEAD and keyring is not None:
            contact = self._ahead.popleft()
            if contact.address.lower() in self._lookups:
                continue  # looked up already, or asked for by its message meanwhile
            self._running += 1
            self._lookup(contact, ctx, keyring).add_done_callback(lambda _: self._done(ctx))

    def _done(self, ctx: LookupContext) -> None:
        self._running -= 1
        self._next(ctx)

    def _lookup(
        self, contact: Contact, ctx: LookupContext, keyring: Keyring
    ) -> asyncio.Task[KeyLookup]:
        address = contact.address.lower()
        task = self._lookups.get(address)
        if task is None:
            task = asyncio.ensure_future(find_key(contact, ctx, keyring, self._unreachable))
            self._lookups[address] = task
        return task

    async def key_for(self, contact: Contact, ctx: LookupContext) -> KeyLookup:
        """The recipient's key, looked up once per run and address (concurrent callers share)."""
        if self._keyring is None:
            return KeyLookup(contact.address, problems=["GnuPG is not installed"])
        return await asyncio.shield(self._lookup(contact, ctx, self._keyring))

    async def protect(
        self, composed: ComposedMessage, contact: Contact, ctx: LookupContext
    ) -> tuple[ComposedMessage, Protection]:
        """``composed`` signed, encrypted and DKIM-signed as configured; what was done."""
        done = Protection()
        key = None
        if self.settings.pgp.encrypt:
            lookup = await self.key_for(contact, ctx)
            key = lookup.key
            if key is not None:
                done.encrypted_to = key.fingerprint
                done.key_source = lookup.source
            elif lookup.published:
                done.problems = lookup.problems or ["the published key could not be used"]
                if self.settings.pgp.require_encryption:
                    raise EncryptionRequired(
                        f"{contact.address}: not sent unencrypted ([pgp] require_encryption): "
                        + "; ".join(done.problems)
                    )
        raw = composed.raw
        message = composed.built
        keyring = self._keyring
        signing = keyring is not None and keyring.signer is not None
        if keyring is not None and (key is not None or signing):
            raw, message = await asyncio.to_thread(
                wrap, raw, keyring=keyring, key=key, sign=signing, case_ref=composed.case_ref
            )
            done.signed_by = keyring.signer or ""
        if self.dkim is not None:
            raw = self.dkim.sign(raw)
            done.dkim = f"d={self.dkim.domain} s={self.dkim.selector}"
        if raw is composed.raw:
            return composed, done
        if self.dkim is not None:
            message = None  # the signed bytes, read back only if someone asks for the object
        return (
            replace(composed, raw=raw, built=message, digest=hashlib.sha256(raw).hexdigest()),
            done,
        )
