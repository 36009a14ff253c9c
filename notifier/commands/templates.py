"""``notify templates list|show|render``: preview the message frames, languages and guides."""

# no ``from __future__ import annotations``: typer reads the options from the annotations at
# run time

import json
from pathlib import Path
from typing import Annotated

import typer

from ..compose import compose, library_for
from ..compose.samples import SAMPLE_NOW, sample_contact, sample_findings, sample_network
from ..errors import NotifierError, exit_code
from .shell import ConfigOption, JsonOption, fail, out, settings_from

__all__ = ["register"]

_FRAMES = ("owner", "network", "cert", "followup")


def register(app: typer.Typer) -> None:

    templates_app = typer.Typer(
        help="Preview message frames, languages and exposure guides.", no_args_is_help=True
    )
    app.add_typer(templates_app, name="templates")

    def loaded(config: Path | None):  # type: ignore[no-untyped-def]
        settings = settings_from(config)
        try:
            return settings, library_for(settings)
        except NotifierError as exc:
            fail(str(exc), exit_code(exc))

    @templates_app.command("list")
    def list_(json_output: JsonOption = False, config: ConfigOption = None) -> None:
        """The frames, the languages and every exposure guide (with its names and ports)."""
        _settings, library = loaded(config)
        guides = [
            {
                "name": name,
                "title": library.guide(name, "en").title,
                "languages": sorted(versions),
                "names": sorted(a for a, g in library.aliases.items() if g == name and a != name),
                "ports": sorted(p for p, g in library.ports.items() if g == name),
                "source": library.guide(name, "en").source,
            }
            for name, versions in sorted(library.guides.items())
        ]
        if json_output:
            data = {"frames": library.frames(), "languages": list(library.languages)}
            print(json.dumps({**data, "guides": guides}, indent=2))
            return
        out.print(f"frames:    {', '.join(library.frames())}", markup=False)
        out.print(f"languages: {', '.join(library.languages)}", markup=False)
        out.print("guides:", markup=False)
        for guide in guides:
            ports = ", ".join(map(str, guide["ports"])) or "-"
            out.print(
                f"  {guide['name']:<18} {guide['title']}  [ports {ports}; "
                f"languages {', '.join(guide['languages'])}]",
                markup=False,
            )

    @templates_app.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="A guide (redis) or a frame (owner).")],
        language: Annotated[str, typer.Option(help="Language of the guide.")] = "en",
        config: ConfigOption = None,
    ) -> None:
        """A guide's text (placeholders unfilled) or a frame's source."""
        _settings, library = loaded(config)
        if name in library.guides:
            guide = library.guide(name, language)
            lines = [f"# {guide.title}  ({guide.language}, {guide.source})", ""]
            lines += ["observed:", f"  {guide.observed}", "risk:", f"  {guide.risk}", "fix:"]
            lines += [f"  - {step}" for step in guide.fix]
            lines += ["check:", *(f"  $ {c}" for c in guide.check)]
            lines += ["links:", *(f"  {link}" for link in guide.links)]
            print("\n".join(lines))
            return
        if name in library.frames():
            assert library.env.loader is not None
            source, filename, _ = library.env.loader.get_source(library.env, f"{name}.txt.j2")
            print(f"# {filename}\n{source}", end="")
            return
        known = ", ".join([*library.frames(), *sorted(library.guides)])
        fail(f"no guide or frame named {name!r} (known: {known})")

    @templates_app.command("render")
    def render(
        name: Annotated[str, typer.Argument(help="A guide (redis) or a frame (owner).")],
        language: Annotated[str, typer.Option(help="Write in this language.")] = "en",
        role: Annotated[
            str, typer.Option(help="Frame for a guide: owner, network, cert or followup.")
        ] = "owner",
        html: Annotated[bool, typer.Option("--html", help="Print the HTML part.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """A complete sample message for a guide or frame, as the recipient would read it."""
        settings, library = loaded(config)
        frame, guide = (name, "generic") if name in library.frames() else (role, name)
        if guide not in library.guides:
            fail(f"no guide or frame named {name!r} (see: notify templates list)")
        if frame not in library.frames():
            fail(f"no frame named {frame!r} (available: {', '.join(library.frames())})")
        followup = frame == "followup"
        try:
            composed = compose(
                sample_findings(library, guide),
                sample_contact("owner" if followup else frame),
                settings=settings,
                template=frame,
                case_ref="NTF-SAMPLE0001",
                now=SAMPLE_NOW,
                in_reply_to="<ntf-sample0001.0@example.org>" if followup else None,
                network=sample_network(),
                language=language,
            )
        except NotifierError as exc:
            fail(str(exc), exit_code(exc))
        part = composed.message.get_body(("html",) if html else ("plain",))
        if part is None:
            fail(f"the frame {frame!r} has no HTML part")
        print(part.get_content(), end="")
