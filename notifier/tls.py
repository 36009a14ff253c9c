"""The TLS context of a run's client connections (HTTPS, SMTP), its system trust store read in
a thread.

Reading the system's CA certificates costs some 20 ms of OpenSSL's time (OpenSSL 3 parses the
whole bundle at once), which would otherwise come before a run's first lookup. OpenSSL leaves
the interpreter free meanwhile, so the store is read in a thread while the run opens, and a
connection's first step waits until it is in. Extra CAs (``http.ca_bundle``, ``smtp.ca_bundle``)
are read at once, so that a wrong file is a configuration error when the run opens, not a failed
connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading

__all__ = ["ClientTLS"]


class ClientTLS:
    """``context``, with the system's CA certificates loading (``ready`` once they are in)."""

    def __init__(self, ca_bundle: str = "", setting: str = "http.ca_bundle") -> None:
        # what ssl.create_default_context() sets up for a client, but for the system's CAs
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname and chain checked
        if ca_bundle:
            try:
                self.context.load_verify_locations(cafile=ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                from .errors import ConfigError

                raise ConfigError(f"cannot load CA bundle {ca_bundle} ({setting}): {exc}") from None
        self._loaded: concurrent.futures.Future[None] = concurrent.futures.Future()
        threading.Thread(target=self._load, name="notifier-trust-store", daemon=True).start()

    def _load(self) -> None:
        # as ssl.create_default_context does it: a store that cannot be read leaves the
        # context without the system's CAs, and its connections fail their checks
        with contextlib.suppress(Exception):
            self.context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        self._loaded.set_result(None)

    async def ready(self) -> None:
        """Until the system's CA certificates are in the context (or could not be read)."""
        if not self._loaded.done():
            await asyncio.wrap_future(self._loaded)
