"""The registries' pace: the next turn waits for the last request to have left, and keeps its
distance from when it did."""

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
    # not 50 ms after the first turn, but nine tenths of an interval after the request left
    assert time.monotonic() - began >= 0.08 + 0.9 / RATE - 0.005
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
    await second.leaving()  # written no sooner than nine tenths of an interval after the first
    assert time.monotonic() - began >= 0.9 / RATE - 0.005
    first.sent()
    second.sent()
