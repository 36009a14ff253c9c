"""The template library: guides by service, the reader's language, checks at load, previews."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.compose import choose_language, compose, load
from notifier.compose.library import check_shipped
from notifier.config import Settings
from notifier.errors import TemplateError
from notifier.models import Contact, Finding, Role

NOW = datetime(2025, 1, 13, 10, 0, tzinfo=UTC)
SETTINGS = Settings.from_mapping(
    {"sender": {"address": "Research <disclosure@research.example>", "organisation": "Research"}}
)


def finding(**kw: Any) -> Finding:
    values: dict[str, Any] = {"port": 12345, "observed_at": NOW}
    values.update(kw)
    return Finding(ip_address("193.0.6.139"), values.pop("text", "open service"), **values)


def contact(**kw: Any) -> Contact:
    values: dict[str, Any] = {"address": "abuse@ripe.net", "role": Role.OWNER}
    values.update(kw)
    return Contact(values.pop("address"), values.pop("role"), ("rdap",), 0.9, **values)


def make(findings: list[Finding] | None = None, **kw: Any) -> Any:
    who = kw.pop("contact", contact())
    return compose(
        findings or [finding()],
        who,
        settings=SETTINGS,
        template=None,
        case_ref="NTF-X",
        now=NOW,
        **kw,
    )


def text_of(composed: Any) -> str:
    parsed = message_from_bytes(composed.raw, policy=default)
    body = str(parsed.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    return body.replace("\r\n", "\n")


class TestGuideChoice:
    @pytest.mark.parametrize(
        ("kw", "guide"),
        [
            ({"service": "Redis"}, "redis"),  # the scanner's or --service name
            ({"service": "opensearch"}, "elasticsearch"),  # an alias
            ({"extra": (("service", "grafana"),)}, "dashboards"),  # scanner extra data
            ({"port": 27017}, "mongodb"),  # the port table
            ({"port": 80, "text": "Index of / (directory listing)"}, "directory-listing"),
            ({"port": 80, "service": "http"}, "generic"),  # a vague name falls through
            ({"port": 12345}, "generic"),
        ],
    )
    def test_guide_by_service_text_or_port(self, kw: dict[str, Any], guide: str) -> None:
        assert make([finding(**kw)]).guides == (guide,)

    def test_one_guide_per_service_in_order(self) -> None:
        composed = make(
            [finding(port=6379), finding(port=9200), finding(port=6380, service="redis")]
        )
        assert composed.guides == ("redis", "elasticsearch")
        text = text_of(composed)
        assert "== Redis without authentication (193.0.6.139:6379, 193.0.6.139:6380) ==" in text
        assert "requirepass" in text and "xpack.security.enabled: true" in text

    def test_hostile_host_name_never_reaches_a_command(self) -> None:
        text = text_of(make([finding(port=6379, hostname="x;rm -rf ~")]))
        assert "redis-cli -h 193.0.6.139 -p 6379 PING" in text


class TestLanguage:
    @pytest.mark.parametrize(
        ("wanted", "tag", "why"),
        [
            (("de-AT", "en"), "de", "prefers de-at, en"),
            (("ja", "pt-BR"), "pt", "first of the recipient's languages (ja, pt-br)"),
            (("ja", "zh"), "en", "no translation for the recipient's languages (ja, zh)"),
            ((), "en", "names no preferred language"),
        ],
    )
    def test_choice_by_primary_subtag(self, wanted: tuple[str, ...], tag: str, why: str) -> None:
        choice = choose_language(wanted, load(None).languages)
        assert (choice.tag, why in choice.reason) == (tag, True)

    def test_contact_languages_choose_and_are_logged(self) -> None:
        composed = make(contact=contact(languages=("fr-CA",)))
        assert composed.language == "fr"
        assert composed.message["Content-Language"] == "fr"
        assert "untranslated" not in composed.language_reason
        assert text_of(composed).startswith("Bonjour,\n")

    def test_untranslated_guide_is_said(self) -> None:
        composed = make([finding(port=6379)], contact=contact(languages=("hi",)))
        assert "guide redis in English (no hi translation)" in composed.language_reason
        assert "(यह खंड केवल अंग्रेज़ी में उपलब्ध है।)" in text_of(composed)

    def test_sender_may_choose(self) -> None:
        assert make(language="es").language_reason == "chosen by the sender"
        with pytest.raises(Exception, match="no translation for language 'xx'"):
            make(language="xx")


class TestNamesInHeaders:
    def test_bidi_and_control_marks_never_reach_a_header(self) -> None:
        name = "Evil\u202eCorp\u200f \u0007Team\u2066"
        composed = make([finding(text="open\u202e service\u0000")], contact=contact(name=name))
        head = composed.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        parsed = message_from_bytes(composed.raw, policy=default)
        assert str(parsed["To"]) == "Evil Corp Team <abuse@ripe.net>"
        for mark in ("\u202e", "\u200f", "\u2066", "\u0007", "\u0000"):
            assert mark not in str(parsed["Subject"]) and mark not in head


def test_the_shipped_templates_pass_the_check() -> None:
    """A run checks only a folder of the user's at start; the shipped templates are checked
    here, as that folder's are."""
    check_shipped()


class TestLoadChecks:
    def folder(self, tmp_path: Path, files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return tmp_path

    @pytest.mark.parametrize(
        ("files", "message"),
        [
            ({"owner.txt.j2": "ok\n{% if %}"}, r"owner.txt.j2 line 2: "),
            (
                {"extra.txt.j2": "a\nb\n{{ recipent.name }}"},
                r"extra.txt.j2 line 3: unknown variable 'recipent'",
            ),
            (
                {"lang/de.yaml": "greeting: 'Hallo $nme'\n"},
                r"de.yaml line 1: unknown placeholder \$nme",
            ),
            ({"lang/de.yaml": "greeting: [\n"}, r"de.yaml line \d+: not valid YAML"),
            ({"lang/xx.yaml": "greeting: 'Hi'\n"}, r"lang/xx.yaml: missing"),
            ({"guides/foo/de.yaml": "title: x\n"}, r"every guide needs en.yaml"),
            (
                {
                    "guides/foo/en.yaml": "title: t\nobserved: o\nrisk: r\nfix: [f]\nlinks: [http://x]\n"
                },
                r"links must be https",
            ),
            (
                {"guides/foo/en.yaml": "title: t\nobserved: o $secret\nrisk: r\nfix: [f]\n"},
                r"en.yaml line 2: unknown placeholder \$secret",
            ),
        ],
    )
    def test_bad_folders_fail_at_load_with_file_and_line(
        self, tmp_path: Path, files: dict[str, str], message: str
    ) -> None:
        with pytest.raises(TemplateError, match=message):
            load(str(self.folder(tmp_path, files)))

    def test_user_guide_overrides_and_adds(self, tmp_path: Path) -> None:
        folder = self.folder(
            tmp_path,
            {
                "guides/redis/en.yaml": (
                    "title: Our Redis\nobserved: seen at $targets\nrisk: r\nfix: [use our vault]\n"
                ),
                "guides/rsync/en.yaml": (
                    "title: Open rsync\nnames: [rsyncd]\nports: [873]\n"
                    "observed: o\nrisk: r\nfix: [f]\n"
                ),
                "lang/en.yaml": "regards: 'Cheers,'\n",
            },
        )
        redis = make([finding(port=6379)], template_dir=folder)
        text = text_of(redis)
        assert "== Our Redis ==" in text and "use our vault" in text and "Cheers," in text
        assert "seen at 193.0.6.139:6379" in text
        assert redis.message.get_body(("html",)) is not None  # our HTML, the user's sentences
        assert make([finding(port=873)], template_dir=folder).guides == ("rsync",)

    def test_config_key_names_the_folder(self, tmp_path: Path) -> None:
        self.folder(tmp_path, {"lang/en.yaml": "regards: 'Best,'\n"})
        settings = Settings.from_mapping(
            {**SETTINGS.model_dump(), "templates": {"dir": str(tmp_path)}}
        )
        composed = compose(
            [finding()], contact(), settings=settings, template=None, case_ref="NTF-X", now=NOW
        )
        assert "Best," in text_of(composed)

    def test_compiled_once(self) -> None:
        assert load(None) is load(None)


class TestTemplatesCommand:
    runner = CliRunner()

    def test_list(self) -> None:
        result = self.runner.invoke(app, ["templates", "list", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        names = {g["name"] for g in data["guides"]}
        assert {"redis", "mongodb", "generic", "smb", "etcd"} <= names
        assert set(data["languages"]) >= {"en", "de", "fr", "es", "pt", "hi"}

    def test_show_and_render(self) -> None:
        shown = self.runner.invoke(app, ["templates", "show", "memcached"])
        assert shown.exit_code == 0 and "-l 127.0.0.1 -U 0" in shown.output
        rendered = self.runner.invoke(
            app, ["templates", "render", "postgresql", "--language", "de"]
        )
        assert rendered.exit_code == 0, rendered.output
        assert "listen_addresses" in rendered.output and "Guten Tag" in rendered.output
        html = self.runner.invoke(app, ["templates", "render", "cert", "--html"])
        assert html.exit_code == 0 and "<ol>" in html.output

    def test_unknown_name_is_one_line_exit_2(self) -> None:
        result = self.runner.invoke(app, ["templates", "render", "nosuch"])
        assert result.exit_code == 2 and "Traceback" not in result.output

    def test_send_service_option_is_checked(self) -> None:
        result = self.runner.invoke(app, ["send", "127.0.0.1", "--service", "bad name;"])
        assert result.exit_code == 2 and "--service" in result.output


class TestLoggedChoice:
    @pytest.mark.corpus
    async def test_security_txt_languages_reach_the_log(self, tmp_path: Path) -> None:
        """The owner's Preferred-Languages choose the language; the intent record says which
        and why, and which guide the message carried."""
        from notifier.pipeline import Notifier
        from notifier.testing import Sandbox

        async with Sandbox(directory=tmp_path) as box:
            async with Notifier(box.settings()) as notifier:
                found = Finding(ip_address("127.1.0.10"), "Elasticsearch open", port=9200)
                result = await notifier.send([found])
            log = box.settings().state_dir / "audit.jsonl"
            records = [json.loads(line) for line in log.read_text().splitlines()]
        [intent] = [r for r in records if r["event"] == "intent"][:1]
        assert intent["language"] == "en"
        assert intent["language_reason"] == "the recipient prefers en, hi"
        assert intent["guides"] == ["elasticsearch"]
        assert result.messages[0].message["Content-Language"] == "en"


def test_broken_folder_stops_send_before_any_lookup(tmp_path: Path) -> None:
    (tmp_path / "owner.txt.j2").write_text("a\n{% for %}\n", encoding="utf-8")
    config = tmp_path / "notify.toml"
    config.write_text(f'[templates]\ndir = "{tmp_path}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["send", "193.0.6.139", "--dry-run", "--config", str(config)])
    assert result.exit_code == 2
    assert "owner.txt.j2 line 2" in result.output and "Traceback" not in result.output
