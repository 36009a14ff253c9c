"""The template filters in plain Python give the bytes Jinja's own filter and loops gave."""

from __future__ import annotations

import random

import jinja2
import pytest
from jinja2.filters import do_wordwrap
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier.compose.filters import FILTERS, html_rows, table_rows, wordwrap

ENV = jinja2.Environment()
WORDS = ["a", "to", "the", "Redis", "exposed", "x" * 70, "non-stop", "--", "ünïcödé", "a-b-c"]
GAPS = [" ", " ", " ", " ", "  ", "\t", "\n", "\r\n", " \n", "\u00a0", "\x0b"]


def _text(rng: random.Random) -> str:
    parts = [rng.choice(["", " ", "  "])]
    for _ in range(rng.randrange(0, 40)):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice(GAPS))
    return "".join(parts)


@pytest.mark.parametrize("seed", range(20))
def test_wordwrap_is_jinjas(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        text = _text(rng)
        width = rng.choice([1, 5, 20, 66, 68, 70, 72, 79])
        long_words = rng.random() < 0.5
        hyphens = rng.random() < 0.5
        wrapstring = rng.choice([None, "\n", "<br>"])
        ours = wordwrap(ENV, text, width, long_words, wrapstring, hyphens)
        assert ours == do_wordwrap(ENV, text, width, long_words, wrapstring, hyphens), (
            text,
            width,
        )


def _row(ip: str, port: str, seen: str, text: str, host: str) -> dict[str, str]:
    return {"ip": ip, "port": port, "observed_at": seen, "text": text, "hostname": host}


ROWS = [
    _row("192.0.2.1", "6379", "2025-01-11 15:35", "Redis <unauthenticated> & open", ""),
    _row("2001:db8::1", "", "", 'say "hi"', "db.example.org"),
    _row("192.0.2.200", "80", "", "x", "a&b"),
]


def test_rows_are_the_template_loops() -> None:
    env = ImmutableSandboxedEnvironment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    loop_text = (
        "{% for f in findings %}\n"
        '  {{ f.ip.ljust(a) }}  {{ f.port.ljust(b) }}  {{ (f.observed_at or "-").ljust(c) }}'
        '  {{ f.text }}{{ " [" ~ f.hostname ~ "]" if f.hostname }}\n'
        "{% endfor %}\n"
    )
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    expected = plain.from_string(loop_text).render(findings=ROWS, a=11, b=4, c=16)
    assert table_rows(ROWS, 11, 4, 16) + "\n" == expected
    loop_html = (
        "{% for f in findings %}\n"
        "<tr><td>{{ f.ip }}</td><td>{{ f.port }}</td><td>{{ f.hostname }}</td>"
        "<td>{{ f.observed_at or none_ }}</td><td>{{ f.text }}</td></tr>\n"
        "{% endfor %}\n"
    )
    expected = env.from_string(loop_html).render(findings=ROWS, none_="not <recorded>")
    assert str(html_rows(ROWS, "not <recorded>")) == expected
    assert "&lt;unauthenticated&gt; &amp; open" in expected
