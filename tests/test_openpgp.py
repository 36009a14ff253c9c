"""OpenPGP: keys found by WKD, security.txt and keyservers, checked, and PGP/MIME on the wire.

Messages are captured at the loopback SMTP server and decrypted and verified with the real gpg.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

import pytest
from pgp_helpers import OWNER, Keys, decrypt, make_keys, parse, stop_agent, verify_signed

from notifier.models import Contact, DeliveryStatus, Finding, Role
from notifier.pipeline import Notifier
from notifier.sandbox.keys import publish_wkd
from notifier.sandbox.web import Reply
from notifier.testing import Sandbox
from notifier.trust.discover import HostFailures, find_key, wkd_hash, wkd_urls
from notifier.trust.keyring import MAX_KEY_BYTES, KeyRejected, Keyring

FINDING = "Elasticsearch on 9200 without authentication"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    made = make_keys(tmp_path_factory.mktemp("pgp"))
    yield made
    stop_agent(made.home)


@pytest.fixture
def keyring() -> Iterator[Keyring]:
    with Keyring() as ring:
        yield ring


def finding() -> Finding:
    return Finding(
        ip_address("127.1.0.10"), FINDING, port=9200, observed_at=datetime(2026, 11, 1, tzinfo=UTC)
    )


def intents(box: Sandbox) -> dict[str, dict[str, object]]:
    path = box.settings().state_dir / "audit.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["recipient"]: r for r in lines if r["event"] == "intent"}


def captured(box: Sandbox, address: str) -> bytes:
    return next(m.raw for m in box.smtp.messages if address in m.rcpt_tos)


class TestWKD:
    def test_hash_matches_the_drafts_example(self) -> None:
        assert wkd_hash("Joe.Doe") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"

    def test_urls_advanced_then_direct(self) -> None:
        advanced, direct = wkd_urls("Joe.Doe@Example.ORG")
        assert advanced == (
            "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/"
            "iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        )
        assert direct == (
            "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        )


class TestKeyChecks:
    def test_good_key_passes(self, keys: Keys, keyring: Keyring) -> None:
        key = keyring.check(keys.owner, OWNER)
        assert key.fingerprint == keys.owner_fpr
        assert "cv25519" in key.algorithm

    @pytest.mark.parametrize(
        ("name", "address", "reason"),
        [
            ("expired", "old@health-dept.test", "expired"),
            ("revoked", "gone@health-dept.test", "revoked"),
            ("weak", "weak@health-dept.test", "RSA key of 1024 bits"),
            ("dsa", "dsa@health-dept.test", "unusable public-key algorithm"),
            ("wrong", OWNER, "no valid user ID for security@health-dept.test"),
            ("owner", "other@health-dept.test", "no valid user ID"),
        ],
    )
    def test_unusable_keys_are_refused(
        self, keys: Keys, keyring: Keyring, name: str, address: str, reason: str
    ) -> None:
        with pytest.raises(KeyRejected, match=reason):
            keyring.check(getattr(keys, name), address)

    def test_oversized_and_garbage(self, keys: Keys, keyring: Keyring) -> None:
        with pytest.raises(KeyRejected, match="over the"):
            keyring.check(keys.owner + b"\0" * MAX_KEY_BYTES, OWNER)
        with pytest.raises(KeyRejected, match="no OpenPGP key"):
            keyring.check(b"<html>not a key</html>", OWNER)

    def test_of_two_keys_only_the_matching_one_is_used(self, keys: Keys, keyring: Keyring) -> None:
        key = keyring.check(keys.wrong + keys.owner, OWNER)
        assert key.fingerprint == keys.owner_fpr


class TestDiscovery:
    async def test_announced_url_and_keyserver_fingerprint(
        self, sandbox: Sandbox, keys: Keys, keyring: Keyring
    ) -> None:
        sandbox.web.route("/owner.asc", Reply(200, keys.owner), host="health-dept.test")
        sandbox.web.route(
            f"/vks/v1/by-fingerprint/{keys.owner_fpr}", Reply(200, keys.owner), host="cloud-eu.test"
        )
        settings = sandbox.settings(pgp={"keyserver": f"https://cloud-eu.test:{sandbox.web.port}"})
        async with Notifier(settings) as notifier:
            url = f"https://health-dept.test:{sandbox.web.port}/owner.asc"
            by_url = await find_key(
                Contact(OWNER, Role.OWNER, ("t",), 0.9, encryption=(url,)), notifier.ctx, keyring
            )
            by_fpr = await find_key(
                Contact(
                    OWNER, Role.OWNER, ("t",), 0.9, encryption=(f"openpgp4fpr:{keys.owner_fpr}",)
                ),
                notifier.ctx,
                keyring,
            )
            wrong_fpr = await find_key(
                Contact(OWNER, Role.OWNER, ("t",), 0.9, encryption=("openpgp4fpr:" + "A" * 40,)),
                notifier.ctx,
                keyring,
            )
        assert by_url.key is not None and by_url.key.fingerprint == keys.owner_fpr
        assert by_url.source.startswith("announced https://health-dept.test")
        assert by_fpr.key is not None and by_fpr.source.startswith("keyserver https://cloud-eu")
        assert wrong_fpr.key is None and wrong_fpr.published

    async def test_advanced_method_and_cache(
        self, sandbox: Sandbox, keys: Keys, keyring: Keyring
    ) -> None:
        sandbox.dns.add_host("openpgpkey.health-dept.test", "127.0.0.1", ptr=False)
        publish_wkd(sandbox.web, OWNER, keys.owner, advanced=True)
        contact = Contact(OWNER, Role.OWNER, ("t",), 0.9)
        async with Notifier(sandbox.settings()) as notifier:
            found = await find_key(contact, notifier.ctx, keyring)
        assert found.key is not None and found.source.startswith("wkd-advanced")

        def advanced_asked() -> int:
            # the direct method's URL is asked alongside, and dropped once this one answers
            return sum("/openpgpkey/health-dept.test/hu/" in r.path for r in sandbox.web.requests)

        asked = advanced_asked()
        from notifier.cache import LookupCache

        with LookupCache.from_settings(sandbox.settings()) as cache:
            async with Notifier(sandbox.settings(), cache=cache) as notifier:
                await find_key(contact, notifier.ctx, keyring)
                again = await find_key(contact, notifier.ctx, keyring)
        assert again.key is not None
        assert advanced_asked() == asked + 1  # one fetch, then the cache

    async def test_an_unreachable_key_host_is_asked_once_a_run(
        self, sandbox: Sandbox, keyring: Keyring
    ) -> None:
        """A provider's mailboxes share its Web Key Directory: its failure is remembered."""
        failures = HostFailures()
        first = Contact("abuse@no-wkd-here.test", Role.NETWORK, ("t",), 0.9)
        second = Contact("noc@no-wkd-here.test", Role.NETWORK, ("t",), 0.9)
        async with Notifier(sandbox.settings()) as notifier:
            one = await find_key(first, notifier.ctx, keyring, failures)
            asked = len(sandbox.dns.queries)
            two = await find_key(second, notifier.ctx, keyring, failures)
        assert asked > 0 and len(sandbox.dns.queries) == asked  # nothing asked the second time
        assert one.key is None and two.key is None and not two.published
        # the same problems, each naming its own URL
        assert len(two.problems) == len(one.problems) == 2
        assert all("?l=noc: " in p and p.endswith("does not resolve") for p in two.problems)

        def unnamed(problems: list[str]) -> list[str]:
            return [re.sub(r"/hu/\w+\?l=\w+", "/hu/-", p) for p in problems]

        assert unnamed(two.problems) == unnamed(one.problems)


class TestOnTheWire:
    async def test_encrypted_and_signed_message_decrypts_and_verifies(
        self, sandbox: Sandbox, keys: Keys, tmp_path: Path
    ) -> None:
        publish_wkd(sandbox.web, OWNER, keys.owner)
        settings = sandbox.settings(pgp={"signing_key": str(keys.signer_file)})
        async with Notifier(settings) as notifier:
            result = await notifier.send([finding()])
        assert {d.status for d in result.deliveries} == {DeliveryStatus.DELIVERED}
        raw = captured(sandbox, OWNER)
        outer = parse(raw)
        assert "Elasticsearch" not in outer["Subject"] and "127.1.0.10" not in outer["Subject"]
        assert outer["Subject"].startswith("[NTF-")
        assert b"Elasticsearch" not in raw and b"9200" not in raw
        inner = decrypt(keys, raw)
        assert verify_signed(keys, inner, tmp_path) == keys.signer_fpr
        signed = parse(inner).get_payload()[0]  # type: ignore[index]
        assert signed.get_param("protected-headers") == "v1"
        assert "Elasticsearch" in signed["Subject"]
        assert signed["Message-ID"] == outer["Message-ID"]
        assert "Elasticsearch" in signed.as_string()
        record = intents(sandbox)[OWNER]["protection"]
        assert isinstance(record, dict)
        assert record["encrypted_to"] == keys.owner_fpr
        assert record["signed_by"] == keys.signer_fpr
        assert str(record["key_source"]).startswith("wkd-direct https://health-dept.test")
        # the network's desk has no key: signed, not encrypted
        plain = captured(sandbox, "abuse@telecom-in.test")
        assert parse(plain).get_content_type() == "multipart/signed"
        head, _, body = plain.partition(b"\r\n\r\n")
        entity = head.partition(b"MIME-Version: 1.0\r\n")[2] + b"\r\n\r\n" + body
        assert verify_signed(keys, entity, tmp_path) == keys.signer_fpr

    async def test_refused_key_sends_unencrypted_and_says_why(
        self, sandbox: Sandbox, keys: Keys
    ) -> None:
        publish_wkd(sandbox.web, OWNER, keys.wrong)
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding()])
        assert {d.status for d in result.deliveries} == {DeliveryStatus.DELIVERED}
        assert parse(captured(sandbox, OWNER)).get_content_type() != "multipart/encrypted"
        record = intents(sandbox)[OWNER]["protection"]
        assert isinstance(record, dict) and record["encrypted_to"] is None
        assert "no valid user ID" in " ".join(record["not_encrypted_because"])  # type: ignore[arg-type]

    async def test_require_encryption_refuses_to_send_in_clear(
        self, sandbox: Sandbox, keys: Keys
    ) -> None:
        publish_wkd(sandbox.web, OWNER, keys.expired)
        settings = sandbox.settings(pgp={"require_encryption": True})
        async with Notifier(settings) as notifier:
            result = await notifier.send([finding()])
        owner = next(d for d in result.deliveries if d.recipient == OWNER)
        assert owner.status == DeliveryStatus.FAILED
        assert not any(OWNER in m.rcpt_tos for m in sandbox.smtp.messages)
        path = sandbox.settings().state_dir / "audit.jsonl"
        refusals = [json.loads(x) for x in path.read_text().splitlines() if '"refusal"' in x]
        assert any("require_encryption" in r["reason"] for r in refusals)


class TestContactsFile:
    async def test_override_with_its_key_is_encrypted(
        self, sandbox: Sandbox, keys: Keys, tmp_path: Path
    ) -> None:
        """contacts.yaml ``encryption``: the operator's own record of a team's key."""
        url = f"https://health-dept.test:{sandbox.web.port}/team-key.asc"
        sandbox.web.route("/team-key.asc", Reply(200, keys.owner), host="health-dept.test")
        contacts = tmp_path / "contacts.yaml"
        contacts.write_text(
            "overrides:\n"
            f'  "127.1.0.0/16": {{name: "Health SOC", email: "{OWNER}", encryption: "{url}"}}\n'
        )
        settings = sandbox.settings(contacts={"file": str(contacts)}, pgp={"wkd": False})
        async with Notifier(settings) as notifier:
            await notifier.send([finding()])
        raw = captured(sandbox, OWNER)
        assert parse(raw).get_content_type() == "multipart/encrypted"
        assert FINDING.encode() in decrypt(keys, raw)
        record = intents(sandbox)[OWNER]["protection"]
        assert isinstance(record, dict) and record["key_source"] == f"announced {url}"


class TestSigningKeyConfig:
    def test_passphrase_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from pgp_helpers import fast_agent, gpg

        from notifier.config import Settings
        from notifier.errors import ConfigError
        from notifier.trust import MessageGuard

        home = tmp_path / "g"
        home.mkdir(mode=0o700)
        fast_agent(home)
        try:
            done = gpg(
                home,
                "--passphrase",
                "s3cret",
                "--quick-gen-key",
                "R <r@research.test>",
                "ed25519",
                "sign",
                "1y",
            )
            del done
            key = tmp_path / "secret.asc"
            key.write_bytes(
                gpg(
                    home,
                    "--passphrase",
                    "s3cret",
                    "--armor",
                    "--export-secret-keys",
                    "r@research.test",
                )
            )
            settings = Settings.from_mapping(
                {"pgp": {"signing_key": str(key), "passphrase_env": "TEST_PGP_PASS"}}
            )
            with pytest.raises(ConfigError, match="TEST_PGP_PASS is not set"):
                MessageGuard(settings)
            monkeypatch.setenv("TEST_PGP_PASS", "s3cret")
            guard = MessageGuard(settings)
            assert guard._keyring is not None and guard._keyring.signer
            guard.close()
            missing = Settings.from_mapping({"pgp": {"signing_key": str(tmp_path / "none.asc")}})
            with pytest.raises(ConfigError, match="cannot read"):
                MessageGuard(missing)
        finally:
            stop_agent(home)
