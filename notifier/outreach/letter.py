"""A printable postal letter about a case (``notify letter REF``), rendered with fpdf2.

The address comes from the registry (the jCard ``adr`` of the network's registrant, else of its
abuse desk, kept in the resolution record) or from the operator. Every name and line passes
through ``header_text``: control characters and bidirectional overrides never reach the page.
The letter names the exposure as the e-mail did, never any leaked content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF

from ..addresses import header_text
from ..config import Settings
from ..errors import ConfigError
from ..ledger import Clock, open_ledger

__all__ = [
    "LetterContent",
    "render_letter",
    "write_letter",
    "find_font",
    "FONT_PATHS",
]

# DejaVu covers Latin, Greek, Cyrillic, Arabic and Hebrew letters; Debian's fonts-dejavu-core
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/local/share/fonts/DejaVuSans.ttf"),
)
_MAX_FINDINGS = 20


@dataclass(frozen=True, slots=True)
class LetterContent:
    case_ref: str
    recipient_name: str
    address: tuple[str, ...]
    findings: tuple[str, ...]  # one line each: "192.0.2.7 port 9200: Elasticsearch without auth"
    emailed_to: tuple[str, ...]  # who already had the e-mail
    first_sent: datetime | None
    date: datetime


def find_font() -> Path:
    for path in FONT_PATHS:
        if path.is_file():
            return path
    raise ConfigError(
        "letters need the DejaVu Sans font (Debian package fonts-dejavu-core); none found"
    )


def _clean(value: str, limit: int = 120) -> str:
    return header_text(value, limit)


def _text(content: LetterContent, settings: Settings) -> list[str]:
    sender = settings.sender
    organisation = _clean(sender.organisation)
    shown = content.findings[:_MAX_FINDINGS]
    more = len(content.findings) - len(shown)
    paragraphs = [
        "Dear Sir or Madam,",
        f"we are {organisation}, a security research team. While measuring which services are "
        "reachable from the internet, we found the following on a network registered to you. "
        "Anyone on the internet can reach it today:",
        *(f"  •  {_clean(line, 160)}" for line in shown),
    ]
    if more > 0:
        paragraphs.append(f"  •  and {more} more, listed in our e-mail")
    if content.emailed_to:
        when = f" on {content.first_sent:%d %B %Y}" if content.first_sent else ""
        paragraphs.append(
            f"We reported this by e-mail{when} to "
            + ", ".join(_clean(a, 80) for a in content.emailed_to[:4])
            + ". That message has the details and the steps to close the exposure. We write by "
            "post because we have no sign that it reached the people responsible."
        )
    paragraphs += [
        "We have not accessed, copied or kept any data from these systems, and we do not "
        "publish this. Please pass this letter to whoever runs these systems, or to your IT "
        "security contact.",
        f"How to reach us: write to {_clean(sender.address)}"
        + (f" or see {_clean(sender.website)}" if sender.website else "")
        + f", and quote the case reference {content.case_ref}. We will send the full details "
        "again, encrypted if you give us an OpenPGP key.",
        "Yours faithfully,",
        organisation,
    ]
    return paragraphs


def render_letter(content: LetterContent, settings: Settings, path: Path) -> str:
    """Write the letter as a PDF to ``path``; the SHA-256 of the file."""
    if not content.address:
        raise ConfigError(f"no postal address for case {content.case_ref}")
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_creation_date(content.date)
    pdf.set_title(f"Security notice {content.case_ref}")
    pdf.set_author(_clean(settings.sender.organisation))
    pdf.set_margins(25, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_font("DejaVu", fname=str(find_font()))
    pdf.add_page()
    # the return line and address field of a DIN 5008 window envelope (45 mm from the top)
    pdf.set_font("DejaVu", size=7)
    pdf.set_xy(25, 45)
    returned = f"{_clean(settings.sender.organisation)} · {_clean(settings.sender.address)}"
    pdf.cell(85, 4, returned[:110])
    pdf.set_font("DejaVu", size=11)
    pdf.set_xy(25, 51)
    block = [_clean(content.recipient_name, 80)] if content.recipient_name else []
    block += [_clean(line, 80) for line in content.address[:7]]
    for line in block:
        pdf.set_x(25)
        pdf.cell(85, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.set_xy(125, 51)
    pdf.cell(60, 5, f"{content.date:%d %B %Y}", align="R")
    pdf.set_xy(125, 57)
    pdf.cell(60, 5, f"Reference {content.case_ref}", align="R")
    pdf.set_xy(25, 98)
    pdf.set_font("DejaVu", size=13)
    pdf.multi_cell(0, 7, f"Security notice: a service of yours is exposed ({content.case_ref})")
    pdf.ln(3)
    pdf.set_font("DejaVu", size=10.5)
    for paragraph in _text(content, settings):
        pdf.multi_cell(0, 5.2, paragraph, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2.2)
    data = bytes(pdf.output())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return hashlib.sha256(data).hexdigest()


def finding_lines(findings: Sequence[dict[str, object]]) -> tuple[str, ...]:
    """One line per finding, from the structured findings an intent record carries."""
    lines: list[str] = []
    for finding in findings:
        port = finding.get("port")
        where = f"{finding.get('ip')}" + (f" port {port}" if port else "")
        lines.append(_clean(f"{where}: {finding.get('text') or 'exposed service'}", 160))
    return tuple(dict.fromkeys(lines))


def write_letter(
    settings: Settings,
    ref: str,
    *,
    to: Sequence[str] = (),
    name: str = "",
    out: Path | None = None,
    clock: Clock,
) -> tuple[Path, str, LetterContent]:
    """Render the letter for case ``ref`` from the log and record it; (path, sha256, content).

    The address is ``to`` when given, else the registry's postal address of the case's network
    as the resolution record kept it. ConfigError when the case or any address is missing.
    """
    ledger = open_ledger(settings, clock=clock)
    model = ledger.view().refresh()
    case = model.case(ref)
    if case is None:
        raise ConfigError(f"no case {header_text(ref, 40)} in the audit log")
    ip = case.ips[0] if case.ips else ""
    resolution = model.resolutions.get(ip)
    network = (resolution.network if resolution is not None else None) or {}
    postal = [str(line) for line in network.get("postal") or [] if isinstance(line, str)]
    address = tuple(_clean(line, 100) for line in to if line.strip()) or tuple(postal)
    recipient = name or str(network.get("postal_name") or network.get("org") or "")
    if not address:
        raise ConfigError(
            f"no postal address known for case {case.ref}: the registry published none; "
            "give one with --to (one option per line)"
        )
    delivered = [m for m in case.delivered() if not m.test]
    moments = [m.delivered_at for m in delivered if m.delivered_at is not None]
    content = LetterContent(
        case_ref=case.ref,
        recipient_name=_clean(recipient, 80),
        address=address,
        findings=finding_lines(list(case.findings.values())),
        emailed_to=tuple(dict.fromkeys(m.recipient for m in delivered)),
        first_sent=min(moments, default=None),
        date=clock(),
    )
    path = out or settings.state_dir / "letters" / f"{case.ref}.pdf"
    digest = render_letter(content, settings, path)
    ledger.append(
        "letter",
        case=case.ref,
        ip=ip,
        recipient=content.recipient_name,
        address_lines=list(content.address),
        path=str(path),
        digest=digest,
    )
    return path, digest, content
