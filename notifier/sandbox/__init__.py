"""The loopback internet's servers: DNS, web (RDAP, security.txt, TSA), WHOIS and SMTP.

``notifier.testing.Sandbox`` assembles them from a ``World``; each is usable on its own.
"""

from .dns import DNSServer
from .rdap import RDAPRegistry
from .smtp import SMTPServer
from .tsa import TimestampAuthority
from .web import Reply, Request, SandboxCA, WebServer
from .whois import WhoisServer
from .world import World, WorldHost, WorldNetwork

__all__ = [
    "DNSServer",
    "RDAPRegistry",
    "SMTPServer",
    "TimestampAuthority",
    "WebServer",
    "Reply",
    "Request",
    "SandboxCA",
    "WhoisServer",
    "World",
    "WorldHost",
    "WorldNetwork",
]
