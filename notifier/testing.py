"""A loopback internet for tests, demos and pipeline authors' own integration tests.

``Sandbox`` turns a ``World`` (networks, hosts, mailboxes) into running servers on 127.0.0.0/8:
a DNS server, RDAP registries and web servers over HTTPS with a throwaway CA, WHOIS servers for
each registry and an SMTP server that records what it receives. ``sandbox.settings()`` points
notifier at all of them::

    async with Sandbox() as sandbox:
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([Finding(ip_address("127.1.0.10"), "open Redis")])
        assert sandbox.smtp.messages
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .config import Settings
from .sandbox.dns import DNSServer
from .sandbox.rdap import RDAPRegistry, domain_json, network_json
from .sandbox.smtp import SMTPServer
from .sandbox.tsa import TimestampAuthority
from .sandbox.web import Reply, SandboxCA, WebServer
from .sandbox.whois import WhoisServer
from .sandbox.world import REGISTRIES, World, WorldNetwork, demo_world
from .sources.rdap import clear_bootstrap_cache

__all__ = ["Sandbox", "World", "demo_world", "whois_text"]


def _range(net: WorldNetwork) -> str:
    block = net.network
    return f"{block.network_address} - {block.broadcast_address}"


def whois_text(net: WorldNetwork) -> str:
    """The port-43 answer ``net``'s registry gives, in that registry's own format."""
    reg = REGISTRIES[net.registry]
    if net.registry == "arin":
        lines = [
            f"NetRange:       {_range(net)}",
            f"CIDR:           {net.cidr}",
            f"NetName:        {net.name}",
            f"NetHandle:      {net.handle}",
            f"Organization:   {net.org}",
            f"Country:        {net.country}",
            "",
            f"OrgName:        {net.org}",
            f"Country:        {net.country}",
        ]
        if net.abuse:
            lines += [
                "OrgAbuseHandle: ABUSE1-ARIN",
                "OrgAbuseName:   Abuse",
                f"OrgAbuseEmail:  {net.abuse}",
            ]
        return "\n".join(lines) + "\n"
    if net.registry == "lacnic":
        lines = [
            "% Joint Whois - whois.lacnic.net",
            "",
            f"inetnum:     {net.cidr}",
            "aut-num:     N/A",
            f"owner:       {net.org}",
            f"ownerid:     {net.handle}",
            f"country:     {net.country}",
            "abuse-c:     ABU1",
            "",
            "nic-hdl:     ABU1",
            "person:      Abuse desk",
            f"e-mail:      {net.abuse or 'removed@lacnic.net'}",
        ]
        return "\n".join(lines) + "\n"
    header = (
        f"% Abuse contact for '{_range(net)}' is '{net.abuse}'"
        if net.abuse
        else f"% No abuse contact registered for {_range(net)}"
    )
    lines = [
        f"% This is the {reg.name} Whois server.",
        "",
        header,
        "",
        f"inetnum:        {_range(net)}",
        f"netname:        {net.name}",
        f"descr:          {net.org}",
        f"country:        {net.country}",
        "abuse-c:        AR1-SANDBOX",
        "status:         ASSIGNED PA",
        "",
        "role:           Abuse desk",
        "nic-hdl:        AR1-SANDBOX",
    ]
    if net.abuse:
        lines.append(f"abuse-mailbox:  {net.abuse}")
    return "\n".join(lines) + "\n"


class Sandbox:
    """Start every server a ``World`` needs on loopback; ``settings()`` points notifier at them.

    ``latency`` adds that many seconds to every RDAP answer (benchmarks). Servers stop on exit.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        directory: Path | None = None,
        latency: float = 0.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.world = world or demo_world()
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="notify-sandbox-")
            directory = Path(self._scratch.name)
        self.directory = directory
        self.latency = latency
        self._clock = clock
        self.ca = SandboxCA()
        self.dns = DNSServer()
        host_ips = sorted({h.ip for h in self.world.hosts if h.name})
        rdap_hosts = [r.rdap_host for r in REGISTRIES.values()] + ["rdap.nic.sandbox"]
        web_names = [h.name for h in self.world.hosts if h.name]
        web_names += [d for d in self.world.mail_domains]
        # the advanced Web Key Directory host of every mail domain
        web_names += [f"openpgpkey.{d}" for d in self.world.mail_domains]
        self.web = WebServer(
            ca=self.ca, hostnames=rdap_hosts + web_names, bind=["127.0.0.1", *host_ips]
        )
        self.registries: dict[str, RDAPRegistry] = {}
        for key, reg in REGISTRIES.items():
            nets = [n for n in self.world.networks if n.registry == key]
            self.registries[key] = RDAPRegistry(
                reg.name,
                networks=[(n.cidr, self._network_json(n)) for n in nets],
                server=self.web,
                host=reg.rdap_host,
            )
        # the registry of the sandbox's ".test" domains, with a registrar abuse desk per domain
        self.registries["domains"] = RDAPRegistry(
            "Sandbox TLD registry",
            domains={
                d: domain_json(d, registrar_abuse_email="abuse@registrar.test", redacted=True)
                for d in self.world.mail_domains
            },
            tlds=["test"],
            server=self.web,
            host="rdap.nic.sandbox",
        )
        first = next(iter(self.registries.values()))
        first.also_bootstrap(*self.registries.values())
        self._whois_extra: dict[str, dict[str, str]] = {key: {} for key in REGISTRIES}
        self.whois: dict[str, WhoisServer] = {
            key: WhoisServer(self._whois_answer(key)) for key in REGISTRIES
        }
        self.iana = WhoisServer(self._iana_answer)
        self.smtp = SMTPServer(script=self.world.mail_script)
        self.tsa = TimestampAuthority()
        self.tsa.mount(self.web, "/tsa")

    # -- world → answers --------------------------------------------------------------------

    def _network_json(self, net: WorldNetwork) -> dict[str, Any]:
        reg = REGISTRIES[net.registry]
        return network_json(
            net.cidr,
            net.handle,
            net.name,
            net.country,
            net.abuse or "",
            reg.name,
            nested=net.registry == "arin",
            org=net.org,
            roles=net.rdap_roles,
        )

    def add_rdap(self, registry: str, cidr: str, answer: dict[str, Any]) -> None:
        """Serve ``answer`` (e.g. a captured RDAP reply) for ``cidr`` from ``registry``."""
        self.registries[registry].add_network(cidr, answer)
        clear_bootstrap_cache()  # the bootstrap files served now name the range too

    def add_whois(self, registry: str, ip: str, answer: str) -> None:
        """Serve ``answer`` (e.g. a captured WHOIS reply) for queries about ``ip``."""
        self._whois_extra[registry][str(ipaddress.ip_address(ip))] = answer

    def _whois_answer(self, key: str) -> Callable[[str], str | None]:
        def answer(query: str) -> str | None:
            words = query.replace("/e", " ").split()
            for word in reversed(words):
                if word in self._whois_extra[key]:
                    return self._whois_extra[key][word]
                try:
                    net = self.world.network_of(str(ipaddress.ip_address(word)))
                except ValueError:
                    continue
                if net is not None and net.registry == key:
                    return whois_text(net)
            return None

        return answer

    def _iana_answer(self, query: str) -> str | None:
        words = query.split()
        if not words:
            return None
        for key, extra in self._whois_extra.items():
            if words[-1] in extra:
                return f"refer:        {REGISTRIES[key].whois_server}\n"
        try:
            net = self.world.network_of(words[-1])
        except ValueError:
            return None
        if net is None:
            return None
        return f"refer:        {REGISTRIES[net.registry].whois_server}\n"

    def _security_txt(self, text: str) -> Reply:
        expires = (self._clock() + timedelta(days=180)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = text.replace("{expires}", expires).encode()
        return Reply(200, body, {"Content-Type": "text/plain; charset=utf-8"})

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        for name in [*(r.rdap_host for r in REGISTRIES.values()), "rdap.nic.sandbox"]:
            self.dns.add_host(name, "127.0.0.1", ptr=False)
        for host in self.world.hosts:
            if host.name:
                self.dns.add_host(host.name, host.ip, ptr=host.ptr)
                if host.security_txt:
                    self.web.route(
                        "/.well-known/security.txt",
                        self._security_txt(host.security_txt),
                        host=host.name,
                    )
        for domain in self.world.mail_domains:
            self.dns.add(domain, "MX", f"10 mx.{domain}")
            self.dns.add_host(domain, "127.0.0.1", ptr=False)
            self.dns.add_host(f"mx.{domain}", "127.0.0.1", ptr=False)
        if self.latency:
            self.web.latency = self.latency
        await self.dns.start()
        await self.web.start()
        # a sandbox started earlier in this process may have served its bootstrap files from
        # this same address and port: what was read of them then is not this sandbox's
        clear_bootstrap_cache()
        for server in [*self.whois.values(), self.iana]:
            await server.start()
        await self.smtp.start()

    async def stop(self) -> None:
        await self.smtp.stop()
        for server in [*self.whois.values(), self.iana]:
            await server.stop()
        await self.web.stop()
        await self.dns.stop()
        if self._scratch is not None:
            self._scratch.cleanup()

    # -- configuration ----------------------------------------------------------------------

    def config(self, **sections: dict[str, Any]) -> dict[str, Any]:
        """The configuration (as a mapping) that points notifier at this sandbox."""
        state = self.directory / "state"
        ca_path = self.ca.pem_path(self.directory)
        first = next(iter(self.registries.values()))
        data: dict[str, Any] = {
            "sender": {
                "address": "Security Research <disclosure@research.test>",
                "organisation": "Sandbox Security Research",
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": self.smtp.port,
                "security": "none",
                "timeout": 5,
                "retry_wait": 0,
                "retry_wait_max": 0,
            },
            "dns": {"nameservers": [self.dns.nameserver], "timeout": 2},
            "rdap": {"bootstrap": first.bootstrap_url, "timeout": 5, "max_retry_after": 2},
            "whois": {
                "servers": {
                    **{
                        reg.whois_server: self.whois[key].endpoint
                        for key, reg in REGISTRIES.items()
                    },
                    "whois.iana.org": self.iana.endpoint,
                },
                "timeout": 3,
            },
            "http": {
                "https_port": self.web.port,
                "ca_bundle": str(ca_path),
                "allow_private": True,
                "timeout": 3,
            },
            "targets": {"allow_nonpublic": True},
            "state": {"dir": str(state)},
            # loopback mail needs no politeness pause between messages to one domain
            "limits": {"per_domain_per_minute": 60_000},
        }
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        return data

    @property
    def tsa_url(self) -> str:
        """The loopback RFC 3161 time-stamping authority (for ``[audit] tsa_url``)."""
        return f"https://127.0.0.1:{self.web.port}/tsa"

    def tsa_ca_path(self) -> Path:
        """The TSA's root certificate (for ``[audit] tsa_ca``)."""
        path = self.directory / "sandbox-tsa-ca.pem"
        path.write_bytes(self.tsa.ca_pem())
        return path

    def settings(self, **sections: dict[str, Any]) -> Settings:
        return Settings.from_mapping(self.config(**sections), origin="sandbox")

    def write_config(self, path: Path | None = None, **sections: dict[str, Any]) -> Path:
        """Write the sandbox's configuration as TOML (for ``notify --config``)."""
        path = path or self.directory / "notify.toml"
        path.write_text(_toml(self.config(**sections)), encoding="utf-8")
        return path

    def describe(self) -> list[str]:
        regs = ", ".join(r.rdap_host for r in REGISTRIES.values())
        return [
            f"DNS     {self.dns.nameserver}",
            f"HTTPS   127.0.0.1:{self.web.port} (RDAP {regs}; security.txt)",
            f"WHOIS   {', '.join(f'{k} {s.endpoint}' for k, s in self.whois.items())}",
            f"SMTP    127.0.0.1:{self.smtp.port}",
        ]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)
