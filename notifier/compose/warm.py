"""Imported once by the compose workers' server process: the shipped templates compiled there.

Workers fork from that server, so each starts with the library already loaded instead of reading
and compiling every template and guide itself (a third of a second of CPU per worker).
"""

from __future__ import annotations

from .library import load

__all__: list[str] = []  # imported for its effect only

load(None)
