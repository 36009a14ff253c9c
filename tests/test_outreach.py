"""Channels beyond e-mail: manual-step reports and postal letters, from a real send."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from notifier.cli import app
from notifier.models import Channel, ChannelKind, Finding, Role
from notifier.pipeline import Notifier
from notifier.sources.rdap import parse_rdap
from notifier.testing import Sandbox

runner = CliRunner()
FINDING = "Elasticsearch on 9200 without authentication"
RTL = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: turns "gpj.exe" around on screen


async def invoke(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


def finding() -> Finding:
    return Finding(
        ip_address("127.1.0.10"), FINDING, port=9200, observed_at=datetime(2026, 11, 1, tzinfo=UTC)
    )


def records(box: Sandbox) -> list[dict[str, Any]]:
    path = box.settings().state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def registrant(name: str, adr: list[Any], label: str | None = None) -> dict[str, Any]:
    params = {"label": label} if label else {}
    return {
        "objectClassName": "entity",
        "handle": "REG-1",
        "roles": ["registrant"],
        "vcardArray": [
            "vcard",
            [
                ["version", {}, "text", "4.0"],
                ["fn", {}, "text", name],
                ["adr", params, "text", adr],
            ],
        ],
    }


class TestPostalAddress:
    @pytest.mark.corpus
    def test_registrant_address_from_a_real_answer(self, corpus_dir: Path) -> None:
        data = json.loads((corpus_dir / "rdap/ip/lacnic-200.57.141.161.json").read_text())
        network = parse_rdap(data).network
        assert network.postal_name == "Triara.com, S.A. de C.V."
        assert network.postal == (
            "Peña Pobre",
            "Insurgentes Sur 3500",
            "14060 Tlalpan Mexico",
            "MX",
        )

    def test_label_and_hostile_characters(self) -> None:
        data = {
            "objectClassName": "ip network",
            "handle": "NET-1",
            "entities": [
                registrant(f"Evil{RTL}Corp\x00", [], label=f"1 Main St\r\nBcc: x\n{RTL}Springfield")
            ],
        }
        network = parse_rdap(data).network
        assert network.postal == ("1 Main St", "Bcc: x", "Springfield")
        assert network.postal_name == "Evil Corp"


class TestManualSteps:
    async def test_reports_steps_and_done(self, sandbox: Sandbox) -> None:
        config = sandbox.write_config()
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding()])
            assert result.resolution is not None
            resolution = replace(
                result.resolution,
                channels=(
                    Channel(
                        ChannelKind.WEB,
                        "https://health-dept.test/report",
                        Role.OWNER,
                        "security.txt at https://records.health-dept.test/",
                    ),
                    Channel(ChannelKind.PHONE, "tel:+1-555-0100", Role.OWNER, "security.txt"),
                ),
            )
            made = await notifier.prepare_manual(resolution, [finding()])
            again = await notifier.prepare_manual(resolution, [finding()])
        assert len(made) == 2 and again == []
        web_report = Path(made[0][1]).read_text()
        assert "Submit through the web form at https://health-dept.test/report" in web_report
        assert FINDING in web_report
        case = result.messages[0].case_ref
        assert f"Case reference: {case}" in web_report
        # the form the sandbox owner's security.txt publishes was prepared by send itself
        form = "https://health-dept.test/report-a-vulnerability"
        assert [channel for channel, _ in result.manual] == [form]
        steps = [r for r in records(sandbox) if r["event"] == "manual-step"]
        assert {s["channel"] for s in steps} == {
            form,
            "https://health-dept.test/report",
            "tel:+1-555-0100",
        }
        steps = [s for s in steps if s["channel"] != form]
        digest = hashlib.sha256(Path(made[0][1]).read_bytes()).hexdigest()
        assert steps[0]["digest"] == digest

        code, stdout, _ = await invoke("manual", "list", "--config", str(config))
        assert code == 0 and "https://health-dept.test/report" in stdout and "tel:+1" in stdout
        code, stdout, _ = await invoke(
            "manual",
            "done",
            case.lower(),
            "tel:+1-555-0100",
            "--note",
            "told the night shift",
            "--config",
            str(config),
        )
        assert code == 0, stdout
        code, stdout, _ = await invoke("manual", "list", "--json", "--config", str(config))
        pending = json.loads(stdout)
        assert [p["channel"] for p in pending] == [form, "https://health-dept.test/report"]
        code, _, stderr = await invoke(
            "manual", "done", case, "https://nowhere.test/", "--config", str(config)
        )
        assert code == 2 and "no pending manual step" in stderr
        done = [r for r in records(sandbox) if r["event"] == "manual-done"]
        assert done[0]["note"] == "told the night shift"


class TestLetter:
    async def test_letter_to_the_registrant(self, sandbox: Sandbox) -> None:
        answer = sandbox._network_json(sandbox.world.networks[0])
        answer["entities"] = [
            *answer.get("entities", []),
            registrant(
                f"State Health {RTL}Department",
                ["", "", ["Block 4", "Ring Road"], "New Delhi", "", "110001", "India"],
            ),
        ]
        sandbox.add_rdap("apnic", "127.1.0.0/24", answer)
        config = sandbox.write_config()
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding()])
        case = result.messages[0].case_ref
        code, stdout, stderr = await invoke("letter", case, "--config", str(config))
        assert code == 0, stderr
        path = sandbox.settings().state_dir / "letters" / f"{case}.pdf"
        text = "\n".join(page.extract_text() for page in PdfReader(path).pages)
        for expected in (
            "State Health Department",
            "Block 4",
            "Ring Road",
            "110001 New Delhi",
            "India",
            case,
            FINDING,
            "security@health-dept.test",
        ):
            assert expected in text, expected
        assert RTL not in text
        [logged] = [r for r in records(sandbox) if r["event"] == "letter"]
        assert logged["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert logged["address_lines"][0] == "Block 4"

    async def test_no_address_is_one_line_and_exit_2(self, sandbox: Sandbox) -> None:
        config = sandbox.write_config()
        async with Notifier(sandbox.settings()) as notifier:
            result = await notifier.send([finding()])
        case = result.messages[0].case_ref
        code, _, stderr = await invoke("letter", case, "--config", str(config))
        assert code == 2 and "no postal address known" in stderr
        code, _, stderr = await invoke("letter", "NTF-NOSUCHCASE", "--config", str(config))
        assert code == 2 and "no case NTF-NOSUCHCASE" in stderr
        code, stdout, stderr = await invoke(
            "letter",
            case,
            "--to",
            "Rua Augusta 1",
            "--to",
            "1100-048 Lisboa",
            "--name",
            "Ação Saúde",
            "--config",
            str(config),
        )
        assert code == 0, stderr
        assert "Ação Saúde" in stdout


async def test_batch_prepares_the_published_form(sandbox: Sandbox, tmp_path: Path) -> None:
    """A batch writes one report per published channel and case, and says so."""
    config = sandbox.write_config()
    source = tmp_path / "findings.jsonl"
    source.write_text(
        json.dumps({"ip": "127.1.0.10", "port": 9200, "finding": FINDING})
        + "\n"
        + json.dumps({"ip": "127.1.0.10", "port": 6379, "finding": "Redis without auth"})
        + "\n"
    )
    code, stdout, stderr = await invoke("batch", str(source), "--config", str(config))
    assert code == 0, stderr
    assert "1 reports prepared for web forms and phone lines" in stdout
    [step] = [r for r in records(sandbox) if r["event"] == "manual-step"]
    report = Path(step["report"]).read_text()
    assert FINDING in report and "Redis without auth" in report
