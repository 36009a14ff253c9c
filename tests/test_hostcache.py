"""Host names' addresses asked once a minute, and once for callers asking at the same time."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import pytest

from notifier import hostcache
from notifier.errors import SourceTimeout
from notifier.hostcache import HostAddresses
from notifier.models import IPAddress


class Answers:
    """A resolver's answers, counted: ``fail`` names time out once."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.fail: set[str] = set()

    async def __call__(self, host: str) -> list[IPAddress]:
        self.asked.append(host)
        await asyncio.sleep(0.01)
        if host in self.fail:
            self.fail.discard(host)
            raise SourceTimeout(f"{host}: no answer")
        return [ip_address("127.0.0.7")]


async def test_callers_at_the_same_time_share_one_question_and_the_answer_is_kept() -> None:
    now = [100.0]
    answers = Answers()
    hosts = HostAddresses(answers, clock=lambda: now[0])
    found = await asyncio.gather(*(hosts.get("rdap.Example.net") for _ in range(5)))
    assert found == [[ip_address("127.0.0.7")]] * 5
    assert answers.asked == ["rdap.Example.net"]
    await hosts.get("rdap.example.net")  # the same name in another case
    assert len(answers.asked) == 1
    now[0] += hostcache.KEEP_SECONDS + 1
    await hosts.get("rdap.example.net")
    assert len(answers.asked) == 2


async def test_a_failure_is_not_kept_and_one_caller_giving_up_leaves_the_others() -> None:
    answers = Answers()
    hosts = HostAddresses(answers)
    answers.fail.add("slow.example")
    with pytest.raises(SourceTimeout):
        await hosts.get("slow.example")
    assert await hosts.get("slow.example") == [ip_address("127.0.0.7")]
    # a caller cancelled mid-question does not take the answer from the one still waiting
    first = asyncio.ensure_future(hosts.get("other.example"))
    second = asyncio.ensure_future(hosts.get("other.example"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == [ip_address("127.0.0.7")]


async def test_the_oldest_names_go_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostcache, "MAX_HOSTS", 3)
    answers = Answers()
    hosts = HostAddresses(answers)
    for name in ("a.example", "b.example", "c.example", "a.example", "d.example"):
        await hosts.get(name)
    asked = len(answers.asked)
    await hosts.get("a.example")  # used again lately: kept
    assert len(answers.asked) == asked
    await hosts.get("b.example")  # the oldest: gone
    assert len(answers.asked) == asked + 1
