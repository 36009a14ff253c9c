"""The audit log refuses secrets in records exactly as its field-by-field walk does."""

from __future__ import annotations

import random

import pytest

from notifier.ledger.chain import _refuse_secrets, normalise_fields

NAMES = ["ip", "port", "text", "password", "api_key", "apiKey", "token_count", "findings", "x"]
LEAVES: list[object] = ["a", 1, None, True, 2.5, "-----BEGIN RSA PRIVATE KEY-----\nMII", "PRIVATE"]


def _value(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth < 4 and roll < 0.3:
        return {rng.choice(NAMES): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if depth < 4 and roll < 0.45:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return rng.choice(LEAVES)


def _nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def _verdict(check: object, *args: object) -> str:
    try:
        check(*args)  # type: ignore[operator]
    except ValueError as exc:
        return str(exc)
    return "ok"


@pytest.mark.parametrize("seed", range(5))
def test_same_verdict_as_the_walk(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        fields = {rng.choice(NAMES[:3] + ["y", "z"]): _value(rng, 0) for _ in range(3)}
        expected = _verdict(_refuse_secrets, fields, "")
        assert _verdict(normalise_fields, fields) == expected, fields


@pytest.mark.parametrize("levels", [62, 63, 64, 65])
def test_nesting_limit(levels: int) -> None:
    fields = {"deep": _nested(levels)}
    assert _verdict(normalise_fields, fields) == _verdict(_refuse_secrets, fields, "")
    assert ("nested too deeply" in _verdict(normalise_fields, fields)) == (levels >= 64)
