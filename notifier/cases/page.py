"""One case as a self-contained HTML page a researcher can hand to a CERT or a journalist.

The page carries everything needed to judge the case without the tool: the timeline, who was
written to and why each was chosen, the exact bytes of every message, and the chain proof (the
log head when the page was written, and the line number and hash of every record it shows, so a
copy of the log checks them: ``notify log verify --head N:HASH``). Names, replies and messages
come from the network and from strangers: Jinja's autoescaping escapes every value, and a
Content-Security-Policy forbids scripts, remote fetches and forms, so a hostile string is shown
as text and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import jinja2

from ..errors import NotifierError
from ..ledger import CaseState, Ledger, ReadModel, format_head
from .review import Chosen, TimelineLine, chosen, summary, timeline

__all__ = ["case_page"]

_MAX_MESSAGE = 2_000_000  # characters of one message shown; the digest covers the whole of it


@dataclass(frozen=True, slots=True)
class _Message:
    message_id: str
    recipient: str
    role: str
    status: str
    digest: str
    text: str
    missing: str = ""


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
# a file of its own: HTML lines do not wrap at a code line's width
_PAGE = _ENV.from_string(resources.files(__package__).joinpath("page.html").read_text("utf-8"))


def _messages(ledger: Ledger, case: CaseState) -> list[_Message]:
    found = []
    for m in case.messages:
        text, missing = "", ""
        try:
            raw = ledger.load_message(m.digest)
        except NotifierError as exc:
            missing = f"the stored copy cannot be shown: {exc}"
        else:
            text = raw.decode("utf-8", "replace").replace("\r\n", "\n")[:_MAX_MESSAGE]
        status = "bounced" if m.bounced else m.status
        found.append(_Message(m.message_id, m.recipient, m.role, status, m.digest, text, missing))
    return found


def case_page(
    ledger: Ledger,
    model: ReadModel,
    case: CaseState,
    *,
    after_days: float,
    sender: str,
    now: datetime,
) -> str:
    """The HTML page of ``case`` (every value escaped)."""
    lines: list[TimelineLine] = timeline(case)
    recipients: list[Chosen] = chosen(model, case)
    return _PAGE.render(
        s=summary(case, after_days=after_days),
        findings=list(case.findings.values()),
        recipients=recipients,
        lines=lines,
        messages=_messages(ledger, case),
        head=format_head(*ledger.head()),
        sender=sender,
        now=now.isoformat(timespec="seconds"),
    )
