"""The contacts registry: national CERTs by country and operator overrides, from ``contacts.yaml``.

Two files feed it: the copy shipped with notifier (the national CERTs) and the user's own
(``[contacts] file``), which extends it; an entry the user names wins over the shipped one. Each
file is validated before use, and every problem carries the line and column it was found at::

    certs:
      IN: {name: "CERT-In", email: "incident@cert-in.org.in"}
    overrides:
      "198.51.100.0/24": {name: "Example SOC", email: "soc@example.com"}
      "AS64500": {name: "Example NOC", email: "noc@example.net"}
      "example.org": {name: "Example Security", email: "security@example.org"}

Three parts: ``entry`` (the validated records and the canonical form of their keys), ``schema``
(reading and validating a file, with line numbers) and ``registry`` (the lookups).
"""

from __future__ import annotations

from .entry import CONFIDENCE, SOURCE, Entry, Problem
from .registry import ContactRegistry
from .schema import check_file, parse_contacts

__all__ = [
    "ContactRegistry",
    "Entry",
    "Problem",
    "check_file",
    "parse_contacts",
    "CONFIDENCE",
    "SOURCE",
]
