"""Cases: what happens to a disclosure after its first message.

``review`` lists cases and tells one case's story from the ledger's read model; ``page`` writes
that story as a self-contained HTML page.
"""

from __future__ import annotations

from .review import (
    CaseFilter,
    CaseSummary,
    Chosen,
    TimelineLine,
    chosen,
    summaries,
    summary,
    timeline,
)

__all__ = [
    "CaseFilter",
    "CaseSummary",
    "Chosen",
    "TimelineLine",
    "chosen",
    "summaries",
    "summary",
    "timeline",
]
