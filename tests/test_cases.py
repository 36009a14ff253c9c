"""notify cases / notify case REF: reviewing disclosures from the read model."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier.cli import app
from notifier.ledger import head
from notifier.testing import Sandbox

runner = CliRunner()
HOSTILE = '<script>alert(1)</script> & <img src=x onerror="x()">'


async def invoke(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
async def config(sandbox: Sandbox) -> str:
    """Two cases: one delivered to owner and desk, one that fell back to the national CERT."""
    path = str(sandbox.write_config())
    code, _, err = await invoke("send", "127.1.0.10", "--finding", HOSTILE, "--config", path)
    assert code == 0, err
    code, _, err = await invoke("send", "127.4.0.40", "--finding", "open Redis", "--config", path)
    assert code == 0, err
    return path


async def listed(config: str, *args: str) -> list[dict[str, object]]:
    code, stdout, stderr = await invoke("cases", "--json", "--config", config, *args)
    assert code == 0, stderr
    return [json.loads(line) for line in stdout.splitlines()]


class TestCases:
    async def test_lists_every_case_with_its_state(self, config: str) -> None:
        cases = await listed(config)
        assert [c["ips"] for c in cases] == [["127.1.0.10"], ["127.4.0.40"]]
        first, second = cases
        assert first["state"] == "delivered" and first["next_followup"]
        assert {r["address"] for r in first["recipients"]} == {  # type: ignore[union-attr]
            "security@health-dept.test",
            "abuse@telecom-in.test",
        }
        statuses = {r["address"]: r["status"] for r in second["recipients"]}  # type: ignore[union-attr]
        assert statuses == {"abuse@silent-isp.test": "failed", "report@cisa.gov": "delivered"}

    async def test_filters(self, config: str) -> None:
        assert [c["ips"] for c in await listed(config, "--ip", "127.4.0.40")] == [["127.4.0.40"]]
        by_rcpt = await listed(config, "--recipient", "REPORT@cisa.gov")
        assert [c["ips"] for c in by_rcpt] == [["127.4.0.40"]]
        assert len(await listed(config, "--state", "delivered")) == 2
        assert await listed(config, "--state", "acknowledged") == []
        assert await listed(config, "--since", "2999-01-01") == []

    async def test_ack_shows_as_acknowledged(self, config: str) -> None:
        ref = str((await listed(config))[0]["case"])
        code, _, _ = await invoke("ack", ref, "--note", "fixed", "--config", config)
        assert code == 0
        (case,) = await listed(config, "--state", "acknowledged")
        assert case["case"] == ref and case["next_followup"] is None

    async def test_bad_filter_is_exit_2(self, config: str) -> None:
        code, _, stderr = await invoke("cases", "--state", "nope", "--config", config)
        assert code == 2 and "--state" in stderr
        code, _, stderr = await invoke("cases", "--since", "yesterday", "--config", config)
        assert code == 2 and "ISO" in stderr


class TestCase:
    async def test_timeline_and_why_each_recipient(self, config: str) -> None:
        ref = str((await listed(config, "--ip", "127.4.0.40"))[0]["case"])
        code, stdout, _ = await invoke("case", ref.lower(), "--json", "--config", config)
        assert code == 0
        case = json.loads(stdout)
        events = [t["event"] for t in case["timeline"]]
        assert events[:2] == ["intent", "outcome"] and "fallback" in events
        assert all(t["hash"] and t["seq"] for t in case["timeline"])
        cert = next(c for c in case["chosen"] if c["address"] == "report@cisa.gov")
        assert cert["role"] == "national-cert" and cert["sources"]
        assert any("the ladder climbed to report@cisa.gov" in t["text"] for t in case["timeline"])
        code, stdout, _ = await invoke("case", ref, "--config", config)
        assert code == 0 and "fallback" in stdout and "report@cisa.gov (national-cert)" in stdout

    async def test_unknown_case_is_exit_2(self, config: str) -> None:
        code, _, stderr = await invoke("case", "NTF-NOTHING", "--config", config)
        assert code == 2 and "no case" in stderr

    async def test_html_page_is_escaped_and_carries_the_proof(
        self, config: str, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """Hostile text is shown as text; the page names the head and every record's hash."""
        ref = str((await listed(config, "--ip", "127.1.0.10"))[0]["case"])
        page = tmp_path / "case.html"
        code, _, stderr = await invoke("case", ref, "--html", str(page), "--config", config)
        assert code == 0, stderr
        text = page.read_text()
        assert "<script" not in text and "<img" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "default-src 'none'" in text  # no script, fetch or form even if one slipped in
        count, digest = head(sandbox.settings().state_dir / "audit.jsonl")
        assert f"{count}:{digest}" in text
        code, stdout, _ = await invoke("case", ref, "--json", "--config", config)
        for line in json.loads(stdout)["timeline"]:
            assert line["hash"] in text
        # the exact messages, with their digests
        assert text.count("Message-ID <code>") == 2
        assert re.search(r"Subject: ", text)
