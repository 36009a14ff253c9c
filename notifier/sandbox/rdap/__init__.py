"""A loopback RDAP registry (``registry``) and the RDAP JSON it serves (``documents``).

See ``registry`` for the server and the misbehaviour it can be asked for; ``documents`` builds
networks, domains, entities and bootstrap files shaped as the real registries write them.
"""

from .documents import REGISTRY_PORT43, bootstrap_json, domain_json, entity_json, network_json
from .registry import RDAPRegistry, write_bootstrap

__all__ = [
    "RDAPRegistry",
    "REGISTRY_PORT43",
    "network_json",
    "domain_json",
    "entity_json",
    "bootstrap_json",
    "write_bootstrap",
]
