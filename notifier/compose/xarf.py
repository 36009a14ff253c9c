"""Machine-readable parts: the X-ARF v4 report of one finding and the CSV of several."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..addresses import header_text
from ..config import Settings
from ..models import Finding
from .context import BODY_TEXT_LIMIT, iso, sender_parts, service_of

__all__ = ["XARF_VERSION", "findings_csv", "xarf_report"]

XARF_VERSION = "4.2.0"
_TAG = re.compile(r"^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+-]*$")
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: str) -> str:
    # a spreadsheet would run a cell starting with these as a formula (CSV injection)
    return "'" + value if value.startswith(_CSV_FORMULA_START) else value


def findings_csv(findings: Sequence[Finding]) -> str:
    """The findings as CSV (ip, port, finding, observed_at), CRLF rows, formula-safe cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["ip", "port", "finding", "observed_at"])
    for f in findings:
        writer.writerow(
            [
                str(f.ip),
                str(f.port) if f.port else "",
                _csv_cell(header_text(f.text, BODY_TEXT_LIMIT)),
                iso(f.observed_at) if f.observed_at else "",
            ]
        )
    return out.getvalue()


def xarf_report(
    finding: Finding, *, settings: Settings, case_ref: str, now: datetime
) -> dict[str, Any]:
    """An X-ARF v4 ``vulnerability/open_service`` report for one finding (one incident each)."""
    _name, address, domain = sender_parts(settings)
    party = {
        "org": header_text(settings.sender.organisation) or domain,
        "contact": address,
        "domain": domain,
    }
    service = service_of(finding)
    tags = [f"service:{service}", "exposure:public", f"case:{case_ref.lower()}"]
    report: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": str(uuid.uuid4()),
        "timestamp": iso(finding.observed_at or now),
        "reporter": party,
        "sender": dict(party),
        "source_identifier": str(finding.ip),
        "category": "vulnerability",
        "type": "open_service",
        "evidence_source": "vulnerability_scan",
        "service": service,
        "description": header_text(finding.text, 1000),
        "remediation": (
            "Restrict network access to the service, enable authentication, and rotate "
            "credentials if data was exposed"
        ),
        "tags": [t for t in tags if _TAG.match(t)],
    }
    if finding.port:
        report["source_port"] = finding.port
        report["service_port"] = finding.port
    return report
