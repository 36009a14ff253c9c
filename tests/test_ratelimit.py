"""The registries' pace: the next turn waits for the last request to have left, and keeps its
distance from when it did; a request that left late is caught up, by the wire's bucket only."""

from __future__ import annotations

import asyncio
import time

from notifier.net import RateLimiter, Turn

RATE = 20.0  # a turn every 50 ms


async def test_the_next_turn_keeps_its_distance_from_when_the_request_left() -> None:
    limiter = RateLimiter(RATE)
    turn = await limiter.wait("rdap.example", confirm=True)
    began = time.monotonic()

    async def leave_late() -> None:
        await asyncio.sleep(0.08)  # the connection pool's and TLS layer's turns, say
        turn.sent()

    leaving = asyncio.create_task(leave_late())
    await limiter.wait("rdap.example")
    # not 50 ms after the first turn, but three quarters of an interval after the request left
    assert time.monotonic() - began >= 0.08 + 0.75 / RATE - 0.005
    await leaving


async def test_a_request_that_never_says_it_left_holds_the_next_turn_two_intervals() -> None:
    limiter = RateLimiter(RATE)
    await limiter.wait("rdap.example", confirm=True)  # its caller never calls ``sent``
    began = time.monotonic()
    await limiter.wait("rdap.example")
    waited = time.monotonic() - began
    assert 2 / RATE - 0.01 <= waited < 0.5


async def test_turns_without_confirmation_keep_the_even_pace() -> None:
    limiter = RateLimiter(RATE)
    began = time.monotonic()
    for _ in range(5):
        turn = await limiter.wait("rdap.example")
        turn.sent()  # harmless: nobody waits for it
    assert 4 / RATE - 0.01 <= time.monotonic() - began < 4 / RATE + 0.2


async def test_a_request_is_held_at_the_wire_until_its_distance_from_the_last() -> None:
    limiter = RateLimiter(RATE)
    first = await limiter.wait("rdap.example", confirm=True)
    second = Turn(limiter, "rdap.example")  # a turn given early, as a busy moment can
    await first.leaving()
    began = time.monotonic()
    await second.leaving()  # a quarter of a request left in the bucket: 3/4 interval later
    assert time.monotonic() - began >= 0.75 / RATE - 0.005
    first.sent()
    second.sent()


async def test_a_late_request_is_caught_up_but_the_rate_holds_over_every_stretch() -> None:
    limiter = RateLimiter(RATE)
    written: list[float] = []
    began = time.monotonic()
    for number in range(12):
        turn = await limiter.wait("rdap.example", confirm=True)
        if number in (3, 4):
            await asyncio.sleep(0.07)  # a busy loop: this request leaves late
        await turn.leaving()
        written.append(time.monotonic())
        turn.sent()
    # a quarter of an interval of each late request's 70 ms caught up (not one tenth, as a rule
    # of keeping nine tenths of an interval from the last request would)
    assert written[-1] - began < 11 / RATE + 0.14 - 2 * 0.25 / RATE + 0.01
    gaps = [b - a for a, b in zip(written, written[1:], strict=False)]
    assert min(gaps) >= 0.75 / RATE - 0.003
    # no stretch sees more than a quarter of a request over the rate
    for i, start in enumerate(written):
        for j in range(i, len(written)):
            assert j - i + 1 <= 1.25 + (written[j] - start) * RATE + 1e-6
