"""Settings: one frozen object, validated at load, passed explicitly.

Sources, in order: the TOML file named by ``--config``, else by ``NOTIFY_CONFIG``, else the
built-in defaults. Unknown keys and wrong types are refused with a one-line ``ConfigError``
naming the key.
"""

from __future__ import annotations

import os
import tomllib
from email.utils import parseaddr
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

__all__ = [
    "Settings",
    "SenderSettings",
    "SMTPSettings",
    "DNSSettings",
    "RDAPSettings",
    "WhoisSettings",
    "HTTPSettings",
    "TargetSettings",
    "StateSettings",
    "ContactsSettings",
    "LimitSettings",
    "AuditSettings",
    "FollowupSettings",
    "BatchSettings",
    "PGPSettings",
    "DKIMSettings",
    "TemplateSettings",
    "load_settings",
    "shipped_path",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _is_loopback_host(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or a bare host."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


class SenderSettings(_Section):
    address: str = "Security Research <disclosure@research.example>"
    organisation: str = "Security Research"
    # where recipients can read who we are and how we scan (optional, shown in the message)
    website: str = ""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        name, addr = parseaddr(value)
        if "@" not in addr or any(c in value for c in "\r\n"):
            raise ValueError(f"not an e-mail address: {value!r}")
        return value


class SMTPSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    timeout: float = Field(default=10, gt=0)
    username: str = ""
    # the password is never stored in the file: only the name of the variable holding it
    password_env: str = "NOTIFY_SMTP_PASSWORD"  # noqa: S105 - a variable name, not a secret
    ca_bundle: str = ""
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_wait: float = Field(default=2.0, ge=0)
    retry_wait_max: float = Field(default=60.0, ge=0)
    # VERP: bounces come back to <local>+<attempt>@<domain>, so they map to one attempt
    envelope_from: str = ""
    # AUTH over a clear connection to another machine puts the password on the wire
    allow_plain_auth: bool = False

    @model_validator(mode="after")
    def _no_clear_password(self) -> SMTPSettings:
        if self.username and self.security == "none" and not self.allow_plain_auth:
            if not _is_loopback_host(self.host):
                raise ValueError(
                    f"refusing SMTP AUTH without TLS to {self.host}: the password would cross "
                    'the network in clear (set security = "starttls" or "tls", or '
                    "allow_plain_auth = true)"
                )
        return self


class DNSSettings(_Section):
    nameservers: list[str] = Field(default_factory=list)
    timeout: float = Field(default=3, gt=0)

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, value: list[str]) -> list[str]:
        for item in value:
            host, _port = _host_port(item, 53)
            try:
                ip_network(host)
            except ValueError:
                raise ValueError(f"nameserver must be an IP address[:port], not {item!r}") from None
        return value

    def endpoints(self) -> list[tuple[str, int]]:
        return [_host_port(item, 53) for item in self.nameservers]


class RDAPSettings(_Section):
    # "" = IANA's live files, cached by their HTTP caching headers, the shipped snapshot offline
    bootstrap: str = ""
    timeout: float = Field(default=5, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=10)
    max_bytes: int = Field(default=2_000_000, ge=1024)
    rate_per_second: float = Field(default=5.0, gt=0)  # per registry host
    max_retry_after: float = Field(default=60.0, ge=0)  # longest Retry-After we wait for


class WhoisSettings(_Section):
    servers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=5, gt=0)
    max_bytes: int = Field(default=1_000_000, ge=1024)
    max_referrals: int = Field(default=3, ge=0, le=10)
    rate_per_second: float = Field(default=2.0, gt=0)

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            try:
                _host_port(target, 43)
            except ValueError:
                raise ValueError(f"server {name!r}: expected host:port, got {target!r}") from None
        return value

    def endpoint(self, server: str) -> tuple[str, int]:
        override = self.servers.get(server.lower())
        return _host_port(override, 43) if override else (server, 43)


class HTTPSettings(_Section):
    https_port: int = Field(default=443, ge=1, le=65535)
    ca_bundle: str = ""
    allow_private: bool = False
    timeout: float = Field(default=5, gt=0)
    # connections (and requests in flight) to one host: a registry answers a few at a time
    connections_per_host: int = Field(default=6, ge=1, le=32)
    max_redirects: int = Field(default=5, ge=0, le=10)
    security_txt_max_bytes: int = Field(default=32_768, ge=1024)
    user_agent: str = ""  # "" = notifier/<version> (+sender address)


class TargetSettings(_Section):
    allow_nonpublic: bool = False
    exclude: list[str] = Field(default_factory=list)  # CIDRs never notified about

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not a network: {item!r}") from None
        return value


class StateSettings(_Section):
    dir: str = "notify-state"
    # "postgresql://user@host:port/db": ledger, messages, cache and cases live there instead
    url: str = ""

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (or empty for files under dir)")
        return value


class ContactsSettings(_Section):
    file: str = ""  # "" = only the shipped national-CERT registry


class LimitSettings(_Section):
    per_recipient_per_day: int = Field(default=50, ge=1)
    # a guard against a runaway run, not a throttle: an ordinary batch (an internet-wide scan of
    # one service, one message per abuse desk) must go out whole
    max_messages_per_run: int = Field(default=10_000, ge=1)
    concurrency: int = Field(default=20, ge=1, le=500)
    # DNS queries (and lookups by host name) a batch keeps in flight, all to the one resolver
    dns_concurrency: int = Field(default=256, ge=1, le=4096)
    per_domain_per_minute: int = Field(default=30, ge=1)
    # processes composing a run's messages once it has more than a few; unset: one per core but
    # the sending process's (at least one), 0: compose in the sending process
    compose_workers: int | None = Field(default=None, ge=0, le=64)
    # processes taking a large batch's per-address lookups (reverse DNS, names, policy) beside
    # the sending process; unset: one per core but the sending process's, 0: none
    lookup_workers: int | None = Field(default=None, ge=0, le=64)
    # a run expecting this many messages starts a second sending process (on a core of its own)
    # that takes part of its SMTP; 0: every message goes out from the one process
    relay_from: int = Field(default=100, ge=0)


class AuditSettings(_Section):
    tsa_url: str = ""  # RFC 3161 time-stamping authority for the chain head
    tsa_ca: str = ""  # PEM of the TSA's certificate(s): verify checks tokens were signed by it
    tsa_timeout: float = Field(default=10, gt=0)
    signing_key: str = ""  # PEM file of an Ed25519 private key: outcome records are signed


class FollowupSettings(_Section):
    after_days: float = Field(default=14, gt=0)


class ResolveSettings(_Section):
    # an RFC 2142 security@ mailbox is guessed only as the last resort (see README); false: never
    guess_role_mailbox: bool = True


class BatchSettings(_Section):
    max_findings_per_message: int = Field(default=500, ge=1)
    cache_ttl_hours: float = Field(default=24, gt=0)


class PGPSettings(_Section):
    signing_key: str = ""  # armoured OpenPGP secret key file: every message is signed
    passphrase_env: str = ""  # variable holding its passphrase ("" = none)
    encrypt: bool = True  # encrypt to a recipient's published key when there is one
    # true: a recipient with a published key that cannot be used gets nothing (the send fails)
    require_encryption: bool = False
    wkd: bool = True  # look every recipient address up in its domain's Web Key Directory
    keyserver: str = ""  # https://host[:port]: VKS/HKPS lookups of openpgp4fpr: fingerprints
    key_cache_hours: float = Field(default=24, gt=0)

    @field_validator("keyserver")
    @classmethod
    def _keyserver(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError(f"keyserver must be an https:// URL, not {value!r}")
        return value.rstrip("/")


class TemplateSettings(_Section):
    dir: str = ""  # a folder of the user's frames, lang/ and guides/, searched before ours


class DKIMSettings(_Section):
    domain: str = ""  # d=
    selector: str = ""  # s=
    key_file: str = ""  # PEM private key (RSA or Ed25519)

    @property
    def enabled(self) -> bool:
        return bool(self.domain and self.selector and self.key_file)


class Settings(_Section):
    """All of notifier's configuration, one frozen object."""

    sender: SenderSettings = Field(default_factory=SenderSettings)
    smtp: SMTPSettings = Field(default_factory=SMTPSettings)
    dns: DNSSettings = Field(default_factory=DNSSettings)
    rdap: RDAPSettings = Field(default_factory=RDAPSettings)
    whois: WhoisSettings = Field(default_factory=WhoisSettings)
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    targets: TargetSettings = Field(default_factory=TargetSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    contacts: ContactsSettings = Field(default_factory=ContactsSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    followup: FollowupSettings = Field(default_factory=FollowupSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    pgp: PGPSettings = Field(default_factory=PGPSettings)
    dkim: DKIMSettings = Field(default_factory=DKIMSettings)
    resolve: ResolveSettings = Field(default_factory=ResolveSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)

    @property
    def state_dir(self) -> Path:
        return Path(self.state.dir)

    @classmethod
    def from_mapping(cls, data: dict[str, object], origin: str = "configuration") -> Settings:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "(top level)"
            if first["type"] == "extra_forbidden":
                raise ConfigError(f"{origin}: unknown key {key}") from None
            message = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{origin}: {key}: {message}") from None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from ``path``, else ``$NOTIFY_CONFIG``, else the defaults."""
    chosen = path if path is not None else os.environ.get("NOTIFY_CONFIG") or None
    if chosen is None:
        return Settings()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per nesting level: "a = [[[[..." exhausts the stack
        raise ConfigError(f"{file}: not valid TOML: arrays or tables nested too deeply") from None
    return Settings.from_mapping(data, origin=str(file))


def shipped_path(name: str) -> Path:
    """A file shipped with notifier (``templates``, ``contacts.yaml``, ``bootstrap``...).

    An installed wheel carries them under ``notifier/_shipped``; a source checkout has them at the
    top of the repository (``notifier/data`` for package data).
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_shipped" / name, package.parent / name, package / "data" / name):
        if candidate.exists():
            return candidate
    raise ConfigError(f"shipped file missing from this installation: {name}")
