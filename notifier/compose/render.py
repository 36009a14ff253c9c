"""Fill a frame: the sentences of one language, then the text and the HTML alternative."""

from __future__ import annotations

import re
from string import Template
from typing import Any

import jinja2

from ..errors import TemplateError
from .library import Library

__all__ = ["render_frame", "sentences"]


def sentences(library: Library, language: str, context: dict[str, Any]) -> dict[str, str]:
    """The frame's sentences in ``language`` with this message's values put in."""
    recipient = context["recipient"]
    network = context["network"] or {}
    values = {
        "name": recipient["name"],
        "organisation": context["sender"]["organisation"],
        "count": str(len(context["findings"])),
        "case_ref": context["case_ref"],
        "message": context["in_reply_to"],
        "country": network.get("country", ""),
        "recipient": recipient["address"],
        "sender": context["sender"]["address"],
        "days": str(context["followup_days"]),
        "website": context["sender"]["website"],
        "sources": ", ".join(recipient["sources"]),
        "file": context["attachments"]["csv"] or context["attachments"]["xarf"],
    }
    catalog = library.catalogs.get(language) or library.catalogs["en"]
    return {key: Template(text).safe_substitute(values) for key, text in catalog.items()}


def _tidy(text: str) -> str:
    """Templates joined from optional blocks leave blank runs: at most one blank line, one end."""
    lines = [line.rstrip() for line in text.splitlines()]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


def _render(library: Library, name: str, context: dict[str, Any]) -> str:
    try:
        return library.env.get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {name}: {exc}") from None
    except Exception as exc:
        # a user's template is code we run: whatever it raises is a template failure
        raise TemplateError(f"template {name}: {type(exc).__name__}: {exc}") from None


def render_frame(library: Library, name: str, context: dict[str, Any]) -> tuple[str, str | None]:
    """The plain text of frame ``name`` and its HTML alternative (None when there is none).

    A user's own text frame is not paired with our HTML: the two would say different things.
    """
    frames = library.frames()
    if name not in frames:
        raise TemplateError(
            f"no template named {name!r} (available: {', '.join(frames) or 'none'})"
        )
    text = _tidy(_render(library, f"{name}.txt.j2", context))
    html_name = f"{name}.html.j2"
    if html_name not in library.names:
        return text, None
    if library.origin(f"{name}.txt.j2") == "user" and library.origin(html_name) == "shipped":
        return text, None
    return text, _render(library, html_name, context)
