"""The template library: Jinja frames, the frame's sentences per language, the exposure guides.

Everything is read, compiled and checked once per template folder (``load``): a syntax error,
an unknown variable or an unknown ``$placeholder`` fails there, naming the file and the line,
never in the middle of a batch. Rendering a message then only fills compiled templates in.

Layout of a template folder (the shipped ``templates/`` and a user's ``[templates] dir``; the
user's folder is searched first, so its files replace or add to the shipped ones):

- ``<name>.txt.j2`` / ``<name>.html.j2``: a message frame (``owner``, ``network``, ``cert``,
  ``followup``...), Jinja in an immutable sandbox with ``StrictUndefined``;
- ``lang/<tag>.yaml``: the frame's sentences in one language (``$name`` placeholders); a user's
  file adds a language or replaces some sentences of a shipped one;
- ``guides/<service>/<tag>.yaml``: one exposure guide in one language; ``en.yaml`` is required
  and names the service's aliases and ports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

import jinja2
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..config import shipped_path
from ..errors import TemplateError
from .context import CONTEXT_NAMES
from .filters import FILTERS

__all__ = ["CATALOG_NAMES", "GUIDE_NAMES", "Guide", "Library", "load"]

# placeholders the frame's sentences and the guides may use
CATALOG_NAMES = frozenset(
    {"name", "organisation", "count", "case_ref", "message", "country", "recipient",
     "sender", "days", "website", "sources", "file"}
)  # fmt: skip
GUIDE_NAMES = frozenset({"ip", "port", "host", "targets"})
_TAG = re.compile(r"^[a-z]{2,3}$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_GUIDE_TEXT = ("title", "observed", "risk")
_GUIDE_LISTS = ("fix", "check")
_MAX_FILE = 256 * 1024
_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"})


@dataclass(frozen=True, slots=True)
class Guide:
    """One exposure guide in one language: sentences still holding ``$ip``-style placeholders."""

    service: str
    language: str
    title: str
    observed: str
    risk: str
    fix: tuple[str, ...]
    check: tuple[str, ...]
    links: tuple[str, ...]
    source: str  # the file it came from

    def render(self, values: dict[str, str]) -> dict[str, Any]:
        def fill(text: str) -> str:
            return Template(text).safe_substitute(values)

        return {
            "name": self.service,
            "language": self.language,
            "title": self.title,
            "observed": fill(self.observed),
            "risk": fill(self.risk),
            "fix": [fill(s) for s in self.fix],
            "check": [fill(s) for s in self.check],
            "links": list(self.links),
        }


@dataclass(frozen=True, slots=True)
class Library:
    """A loaded, checked template folder (the user's over the shipped one)."""

    env: ImmutableSandboxedEnvironment
    catalogs: dict[str, dict[str, str]]  # language tag -> sentence key -> text
    guides: dict[str, dict[str, Guide]]  # service -> language tag -> guide
    aliases: dict[str, str] = field(default_factory=dict)  # any name of a service -> service
    ports: dict[int, str] = field(default_factory=dict)  # port -> service
    words: dict[str, str] = field(default_factory=dict)  # phrase in a finding's text -> service
    user_dir: str | None = None
    names: frozenset[str] = frozenset()  # every template file, listed once at load

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.catalogs))

    def frames(self) -> list[str]:
        """Names of the message frames (``owner``, ``network``...), without the suffix."""
        return sorted(
            t.removesuffix(".txt.j2")
            for t in self.names
            if t.endswith(".txt.j2") and not t.startswith("_")
        )

    def origin(self, template: str) -> str:
        """``user`` or ``shipped``: which folder a template comes from."""
        if self.user_dir is None:
            return "shipped"
        return "user" if (Path(self.user_dir) / template).is_file() else "shipped"

    def guide(self, service: str, language: str) -> Guide:
        versions = self.guides[service]
        return versions.get(language) or versions["en"]


def _where(path: Path, text: str, needle: str) -> str:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return f"{path} line {number}"
    return str(path)


def _placeholders(path: Path, raw: str, value: str, allowed: frozenset[str]) -> None:
    template = Template(value)
    if not template.is_valid():
        raise TemplateError(f"{_where(path, raw, '$')}: a '$' that is not a placeholder (write $$)")
    for name in template.get_identifiers():
        if name not in allowed:
            raise TemplateError(
                f"{_where(path, raw, '$' + name)}: unknown placeholder ${name} "
                f"(known: {', '.join('$' + n for n in sorted(allowed))})"
            )


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        if path.stat().st_size > _MAX_FILE:
            raise TemplateError(f"{path}: larger than {_MAX_FILE // 1024} KiB")
        raw = path.read_text(encoding="utf-8")
        data = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise TemplateError(
            f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping of keys to text")
    return data, raw


def _catalog(path: Path) -> dict[str, str]:
    data, raw = _read_yaml(path)
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TemplateError(f"{_where(path, raw, str(key))}: {key!r} must be text")
        _placeholders(path, raw, value, CATALOG_NAMES)
        out[key] = value.strip()
    return out


def _text_list(path: Path, raw: str, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TemplateError(f"{_where(path, raw, key + ':')}: {key} must be a list of text")
    for item in value:
        _placeholders(path, raw, item, GUIDE_NAMES)
    return tuple(v.strip() for v in value)


def _guide(path: Path, service: str, language: str, fallback: Guide | None) -> Guide:
    data, raw = _read_yaml(path)
    unknown = set(data) - {*_GUIDE_TEXT, *_GUIDE_LISTS, "links", "names", "ports", "words"}
    if unknown:
        key = sorted(unknown)[0]
        raise TemplateError(f"{_where(path, raw, key + ':')}: unknown key {key!r}")
    texts: dict[str, str] = {}
    for key in _GUIDE_TEXT:
        value = data.get(key, getattr(fallback, key) if fallback else None)
        if not isinstance(value, str) or not value.strip():
            raise TemplateError(f"{path}: {key} is required text")
        _placeholders(path, raw, value, GUIDE_NAMES)
        texts[key] = " ".join(value.split())
    lists = {
        key: _text_list(path, raw, key, data[key])
        if key in data
        else (getattr(fallback, key) if fallback else ())
        for key in (*_GUIDE_LISTS, "links")
    }
    if not lists["fix"]:
        raise TemplateError(f"{path}: fix needs at least one step")
    for link in lists["links"]:
        if not link.startswith("https://"):
            raise TemplateError(f"{_where(path, raw, link)}: links must be https:// addresses")
    return Guide(service, language, source=str(path), **texts, **lists)  # type: ignore[arg-type]


def check_templates(env: ImmutableSandboxedEnvironment, names: Iterable[str]) -> None:
    """``TemplateError`` with the file and line of the first of ``names`` that does not parse
    or uses a variable a message does not have."""
    for name in sorted(names):
        _check_frame(env, name)


def check_shipped() -> None:
    """The shipped templates, checked as a folder of the user's is."""
    env = _environment([str(shipped_path("templates"))])
    check_templates(env, env.list_templates(extensions=["j2"]))


def _check_frame(env: ImmutableSandboxedEnvironment, name: str) -> None:
    source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    try:
        # parsed to check it; compiled where it is first rendered (a compose worker, mostly),
        # not here, where it would hold up a run's first lookups by some 50 ms
        tree = env.parse(source, name, filename)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {filename} line {exc.lineno}: {exc.message}") from None
    # names a template binds itself (imports, sets, macros) are visible in its blocks too
    own = {n.target for n in tree.find_all(jinja2.nodes.Import)}
    own |= {n.name for n in tree.find_all(jinja2.nodes.Macro)}
    own |= {n.name for n in tree.find_all(jinja2.nodes.Name) if n.ctx == "store"}
    unknown = meta.find_undeclared_variables(tree) - CONTEXT_NAMES - _JINJA_GLOBALS - own
    if unknown:
        first = min(
            (node.lineno, node.name)
            for node in tree.find_all(jinja2.nodes.Name)
            if node.name in unknown
        )
        raise TemplateError(f"template {filename} line {first[0]}: unknown variable {first[1]!r}")


def _environment(search: list[str]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "htm.j2", "xml.j2"),
            default_for_string=False,
            default=False,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    return env


@lru_cache(maxsize=8)
def load(user_dir: str | None = None) -> Library:
    """The library of ``user_dir`` over the shipped templates, compiled and checked once."""
    shipped = Path(shipped_path("templates"))
    folders = [shipped] + ([Path(user_dir)] if user_dir else [])
    if user_dir and not Path(user_dir).is_dir():
        raise TemplateError(f"template folder not found: {user_dir}")
    env = _environment([str(f) for f in reversed(folders)])
    names = frozenset(env.list_templates(extensions=["j2"]))
    # with a folder of the user's, every template it can reach is checked before any lookup;
    # the shipped ones alone change only with notifier, and its tests check them
    # (``check_shipped``): 40 ms at every start, each worker process's included
    if user_dir:
        check_templates(env, names)

    catalogs: dict[str, dict[str, str]] = {}
    for folder in folders:
        for path in sorted((folder / "lang").glob("*.yaml")):
            if not _TAG.match(path.stem):
                raise TemplateError(f"{path}: a language file is named by its tag (de.yaml)")
            catalogs.setdefault(path.stem, {}).update(_catalog(path))
    english = catalogs.get("en", {})
    for tag, sentences in catalogs.items():
        missing = sorted(set(english) - set(sentences))
        if missing:
            raise TemplateError(f"lang/{tag}.yaml: missing {', '.join(missing[:5])}")

    guides: dict[str, dict[str, Guide]] = {}
    aliases: dict[str, str] = {}
    ports: dict[int, str] = {}
    words: dict[str, str] = {}
    for folder in folders:
        for directory in sorted(p for p in (folder / "guides").glob("*") if p.is_dir()):
            service = directory.name
            if not _SERVICE.match(service):
                raise TemplateError(f"{directory}: a guide folder is named by its service")
            base = directory / "en.yaml"
            if base.is_file():
                data, raw = _read_yaml(base)
                for alias in _text_list(base, raw, "names", data.get("names", [])):
                    aliases[alias.lower()] = service
                for word in _text_list(base, raw, "words", data.get("words", [])):
                    words[word.lower()] = service
                for port in data.get("ports", []):
                    if not isinstance(port, int) or not 0 < port < 65536:
                        raise TemplateError(f"{_where(base, raw, 'ports')}: not a port: {port!r}")
                    ports[port] = service
            versions = guides.setdefault(service, {})
            if "en" not in versions and not base.is_file():
                raise TemplateError(f"{directory}: every guide needs en.yaml")
            for path in sorted(directory.glob("*.yaml"), key=lambda p: (p.stem != "en", p.stem)):
                if not _TAG.match(path.stem):
                    raise TemplateError(f"{path}: a guide file is named by its language (de.yaml)")
                fallback = versions.get("en") if path.stem != "en" else None
                if path.stem == "en":
                    versions["en"] = _guide(path, service, "en", None)
                else:
                    versions[path.stem] = _guide(path, service, path.stem, fallback)
            aliases.setdefault(service, service)
    if "generic" not in guides:
        raise TemplateError("templates: the generic guide (guides/generic/en.yaml) is missing")
    return Library(env, catalogs, guides, aliases, ports, words, user_dir, names)
