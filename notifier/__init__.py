"""notifier: find who owns an exposed address and tell them, with evidence.

The command line (``notify``) is a thin shell over this package: everything it does is a call to
``Notifier``. ``notifier.testing.Sandbox`` runs a loopback internet to test integrations against.
"""

__version__ = "0.1.0"

from .api import SyncNotifier, notify, resolve  # noqa: E402
from .batch import Batch, BatchCounts, FindingOutcome  # noqa: E402
from .config import Settings, load_settings  # noqa: E402
from .errors import (  # noqa: E402
    AuditError,
    AuditIntegrityError,
    ConfigError,
    DeliveryError,
    NoContactFound,
    NotifierError,
    PermanentDeliveryError,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
    TargetRefused,
    TemplateError,
    TransientDeliveryError,
)
from .models import (  # noqa: E402
    Channel,
    ChannelKind,
    Contact,
    Delivery,
    DeliveryStatus,
    Evidence,
    Finding,
    HintCheck,
    HostHint,
    Network,
    Resolution,
    Role,
    SourceReport,
    Target,
)
from .pipeline import Notifier, SendResult  # noqa: E402

__all__ = [
    "__version__",
    "Notifier",
    "SendResult",
    "SyncNotifier",
    "notify",
    "resolve",
    "Batch",
    "BatchCounts",
    "FindingOutcome",
    "Settings",
    "load_settings",
    "Contact",
    "Delivery",
    "DeliveryStatus",
    "Evidence",
    "Finding",
    "HostHint",
    "HintCheck",
    "Channel",
    "ChannelKind",
    "Network",
    "Resolution",
    "Role",
    "SourceReport",
    "Target",
    "NotifierError",
    "ConfigError",
    "TargetRefused",
    "SourceError",
    "SourceTimeout",
    "SourceUnavailable",
    "SourceProtocolError",
    "NoContactFound",
    "TemplateError",
    "DeliveryError",
    "TransientDeliveryError",
    "PermanentDeliveryError",
    "AuditError",
    "AuditIntegrityError",
]
