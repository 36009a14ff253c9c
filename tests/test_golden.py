"""Golden files: every guide, and every language of every frame, rendered from sample findings.

A change to a template or a sentence shows up here as a diff. After checking the new text,
rewrite the files with ``pytest tests/test_golden.py --update-golden`` and commit them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.compose import ComposedMessage, compose, load
from notifier.compose.samples import SAMPLE_NOW, sample_contact, sample_findings, sample_network
from notifier.config import Settings

GOLDEN = Path(__file__).parent / "golden"
LIBRARY = load(None)
SETTINGS = Settings.from_mapping(
    {
        "sender": {
            "address": "Example Research <disclosure@research.example>",
            "organisation": "Example Research",
            "website": "https://research.example/scanning",
        }
    }
)
FRAMES = ("owner", "network", "cert", "followup")


def render(guide: str, frame: str, language: str) -> ComposedMessage:
    followup = frame == "followup"
    return compose(
        sample_findings(LIBRARY, guide),
        sample_contact("owner" if followup else frame, (language,)),
        settings=SETTINGS,
        template=frame,
        case_ref="NTF-GOLDEN0001",
        now=SAMPLE_NOW,
        in_reply_to="<ntf-golden0001.0@research.example>" if followup else None,
        network=sample_network(),
    )


def part(composed: ComposedMessage, kind: str) -> str:
    body = composed.message.get_body((kind,))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


def check(request: pytest.FixtureRequest, name: str, text: str) -> None:
    path = GOLDEN / name
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"{path} missing: run pytest {__file__} --update-golden"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize("guide", sorted(LIBRARY.guides))
def test_every_guide(request: pytest.FixtureRequest, guide: str) -> None:
    """Each guide, in the owner frame in English: observed, risk, fix, check and links."""
    composed = render(guide, "owner", "en")
    assert composed.guides == (guide,)
    text = part(composed, "plain")
    for step in LIBRARY.guide(guide, "en").fix[:1]:
        assert step.split()[0] in text
    check(request, f"guides/{guide}.txt", text)


TRANSLATED = sorted(
    (guide, tag) for guide, versions in LIBRARY.guides.items() for tag in versions if tag != "en"
)


@pytest.mark.parametrize(("guide", "language"), TRANSLATED)
def test_every_translated_guide(request: pytest.FixtureRequest, guide: str, language: str) -> None:
    """A guide's translation is used when the reader's language has one."""
    composed = render(guide, "owner", language)
    assert composed.language == language and "in English" not in composed.language_reason
    check(request, f"guides/{guide}.{language}.txt", part(composed, "plain"))


@pytest.mark.parametrize("language", sorted(LIBRARY.languages))
@pytest.mark.parametrize("frame", FRAMES)
def test_every_frame_in_every_language(
    request: pytest.FixtureRequest, frame: str, language: str
) -> None:
    """The generic guide in every frame and language: chosen by the reader's language."""
    composed = render("generic", frame, language)
    assert composed.language == language
    assert composed.message["Content-Language"] == language
    check(request, f"frames/{frame}.{language}.txt", part(composed, "plain"))


@pytest.mark.parametrize("language", sorted(LIBRARY.languages))
def test_html_in_every_language(request: pytest.FixtureRequest, language: str) -> None:
    """The HTML alternative says the same, with fix steps as a list and findings as a table."""
    html = part(render("generic", "owner", language), "html")
    assert f'<html lang="{language}">' in html and "<ol>" in html and "<table>" in html
    assert "src=" not in html and "<link" not in html and "<script" not in html
    check(request, f"html/owner.{language}.html", html)


def test_every_shipped_language_has_every_sentence() -> None:
    """No translation lacks a sentence the English frame uses (checked at load, shown here)."""
    english = set(LIBRARY.catalogs["en"])
    for tag, sentences in LIBRARY.catalogs.items():
        assert set(sentences) == english, tag
    assert {"en", "de", "fr", "es", "pt", "hi"} <= set(LIBRARY.languages)
    assert {"en", "de", "fr", "es", "pt", "hi"} <= set(LIBRARY.guides["generic"])
