"""The audit log refuses secrets in records exactly as its field-by-field walk does, and writes
a record's fields encoded one at a time exactly as its canonical form."""

from __future__ import annotations

import random

import pytest

from notifier.ledger.chain import (
    _RESERVED as RESERVED,
)
from notifier.ledger.chain import (
    _refuse_secrets,
    canonical,
    joined,
    normalise_fields,
    pieces,
    pieces_hash,
    record_hash,
)

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


@pytest.mark.parametrize("seed", range(3))
def test_fields_encoded_one_at_a_time_make_the_canonical_form(seed: int) -> None:
    """``joined(pieces(...))`` is ``canonical``, whatever the names sort like (a prefix, an
    underscore, upper case, non-ASCII) and the values hold; ``pieces_hash`` is ``record_hash``."""
    rng = random.Random(seed)
    names = ["a", "a_b", "aB", "ab", "B", "é", "é2", "hash", "sig", "seq", "z"]
    leaves: list[object] = ["x", "ü\u2028", 0, -1.5, None, False, '"quoted"']
    for _ in range(300):
        record = {rng.choice(names): _value(rng, 0) for _ in range(rng.randrange(1, 8))}
        record["note"] = rng.choice(leaves)
        parts = pieces(record)
        assert joined(parts) == canonical(record)
        assert pieces_hash(parts) == record_hash(record)
        try:
            normalised = normalise_fields({k: v for k, v in record.items() if k not in RESERVED})
        except ValueError:
            continue  # a secret-looking name: refused, as the tests above check
        assert normalised.parts == pieces(normalised)


def test_findings_written_where_composed_make_the_same_record() -> None:
    """An intent's findings, normalised in a compose worker and sent as their pieces, make the
    record the sending process would have made itself."""
    from datetime import UTC, datetime
    from ipaddress import ip_address

    from notifier.ledger.chain import Fields
    from notifier.ledger.records import intent_findings
    from notifier.models import Finding

    rng = random.Random(3)
    findings = [
        Finding(
            ip_address(rng.choice(["127.0.0.1", "::1", "127.3.4.5"])),
            rng.choice(["Redis open", "Elasticsearch — offen\u2028", 'a "quoted" text']),
            port=rng.choice([None, 6379, 9200]),
            hostname=rng.choice([None, "h.example"]),
            observed_at=rng.choice([None, datetime(2026, 1, 2, 3, 4, tzinfo=UTC)]),
            extra=rng.choice([(), (("score", "7.5"),)]),
        )
        for _ in range(40)
    ]
    own = {"attempt_id": "a1", "recipient": "abuse@example.net", "protection": None}
    ready = Fields.from_parts(dict(normalise_fields(intent_findings(findings)).parts))
    merged = normalise_fields(own, ready)
    direct = normalise_fields({**own, **intent_findings(findings)})
    assert merged == direct and merged.parts == direct.parts
    assert joined(merged.parts) == canonical(direct)
    with pytest.raises(ValueError, match="given twice"):
        normalise_fields({"findings": []}, ready)
