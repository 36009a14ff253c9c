"""Many findings at once: resolve each address once, send each recipient one message.

``Batch`` is the front: ``submit`` findings as they come (a scanner's stream), then ``flush``.
Findings are kept as columns of machine integers (``columns``), so a million-line scanner output
fits in bounded memory. Each distinct address is resolved in stages (``stages``): reverse DNS
wide, the registries each at their own rate with one request per network range, then the
lookups by host name, so the registries' pace bounds the run. Every recipient then gets one
message listing all of its findings (split past ``batch.max_findings_per_message``); recipients
are written to in parallel over the notifier's small pool of SMTP connections, and audit records
written at the same moment share one fsync. Findings that no recipient took climb the fallback
ladder together. Re-running on the same input after an interruption sends only what was not
delivered: idempotence comes from the audit log.
"""

from .core import Batch, BatchCounts, FindingOutcome

__all__ = ["Batch", "BatchCounts", "FindingOutcome"]
