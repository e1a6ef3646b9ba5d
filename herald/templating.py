"""Email templates: where they come from, and the checks that refuse a broken one at start.

A template is a triplet, as in zulip: ``<name>.subject.txt``, ``<name>.txt`` and
``<name>.html``. A file of that name in ``[mail] templates_dir`` replaces the packaged
one (the others still come from the package), and a route's ``template = "name"``
picks another triplet. Templates are read once per process (no ``stat()`` per email),
so a changed file takes effect at the next start, where it is checked again.

A route's ``subject`` is a Jinja2 template too, run in an immutable sandbox.

`check_route_templates` runs at start (the composition root) and refuses what can be
known without a change to render, naming the route or the file: every file compiles,
every template a route names has its three files, no template (nor a route's subject)
uses a variable the renderer does not give, the cause of most typos.
`herald.email.render.check_templates` goes further and renders sample changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    select_autoescape,
)
from jinja2.loaders import BaseLoader
from jinja2.sandbox import ImmutableSandboxedEnvironment

from herald.config import DEFAULT_TEMPLATE, TEMPLATE_NAME, ConfigError, Settings

__all__ = [
    "DEFAULT_TEMPLATE",
    "PARTS",
    "SUBJECT_FILTERS",
    "SUBJECT_VARIABLES",
    "TEMPLATE_VARIABLES",
    "Presentation",
    "TemplateProblem",
    "check_route_templates",
    "check_subject",
    "check_templates_statically",
    "environment",
    "is_template_name",
    "presentation_for",
    "subject_sandbox",
]

#: The files of one template, in the order they are rendered.
PARTS = (".subject.txt", ".txt", ".html")
#: What the triplet templates are given (herald/email/render.py documents each).
TEMPLATE_VARIABLES = frozenset(
    {
        "subject", "default_subject", "headline", "kicker", "byline", "footer", "summary",
        "summary_note", "route", "changes", "count", "more_changes", "single", "one_row",
    }
)  # fmt: skip
#: What the digest triplet (`digest.subject.txt`, `.txt`, `.html`) is given
#: (herald/digests/email.py documents each).
DIGEST_VARIABLES = frozenset(
    {
        "subject", "heading", "frequency", "period", "schedule", "timezone", "route",
        "overview", "overview_note", "items", "count", "more", "unsubscribe_url",
    }
)  # fmt: skip
DIGEST_TEMPLATE = "digest"
#: What a route's subject template is given (herald/email/subject.py).
SUBJECT_VARIABLES = ("change", "row", "old", "new", "changed", "route", "label", "table", "count")
#: Filters the subject sandbox adds to Jinja2's own: ``{{ change.changed_at | readable }}``.
SUBJECT_FILTERS = ("readable",)
#: A templates_dir holding more files than this is not a templates folder.
_MAX_FILES = 500


class TemplateProblem(ValueError):
    """A template Herald refuses to start with; the message names the file or the route."""


@dataclass(frozen=True)
class Presentation:
    """How one route's emails are written: which templates, which subject, which label."""

    template: str = DEFAULT_TEMPLATE
    #: The route's `subject`: a sandboxed Jinja2 template; None: the default in words.
    subject: str | None = None
    #: The column that names a row in subjects and bodies (else title, name, ...).
    label_field: str | None = None
    #: `[mail] templates_dir`, absolute; None: the packaged templates only.
    templates_dir: str | None = None


def presentation_for(settings: Settings, route: str) -> Presentation:
    """How the emails of the route named ``route`` are written (a route since removed
    from the configuration: the defaults)."""
    found = next((r for r in settings.routes if r.name == route), None)
    if found is None:
        return Presentation(templates_dir=settings.mail_templates_dir)
    return Presentation(
        template=found.template,
        subject=found.subject,
        label_field=found.label_field,
        templates_dir=settings.mail_templates_dir,
    )


def is_template_name(name: str) -> bool:
    return bool(TEMPLATE_NAME.fullmatch(name))


@functools.lru_cache(maxsize=8)
def environment(templates_dir: str | None = None) -> Environment:
    """The Jinja2 environment for a templates_dir (None: packaged templates only).

    HTML templates are autoescaped (by extension); text ones are not. Undefined
    names are errors, never silently empty.
    """
    loader: BaseLoader = PackageLoader("herald.email", "templates")
    if templates_dir is not None:
        loader = ChoiceLoader([FileSystemLoader(templates_dir), loader])
    return Environment(
        loader=loader,
        auto_reload=False,  # read once: no stat() per email
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def subject_sandbox(filters: Mapping[str, Callable[..., Any]]) -> Environment:
    """The sandbox a subject runs in: no Python internals, no change to the row."""
    sandbox = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    sandbox.filters.update(filters)
    return sandbox


_CHECKING_SANDBOX = subject_sandbox(dict.fromkeys(SUBJECT_FILTERS, str))


def _unknown_names(env: Environment, tree: nodes.Template, known: Iterable[str]) -> list[str]:
    return sorted(meta.find_undeclared_variables(tree) - set(known) - set(env.globals))


def check_subject(source: str) -> None:
    """Refuse a subject template that can never render: ``TemplateProblem`` says why."""
    try:
        tree = _CHECKING_SANDBOX.parse(source)
        _CHECKING_SANDBOX.compile(tree)  # unknown filters and tests fail here
    except TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"is not a valid template: {exc.message} (line {exc.lineno})"
        ) from None
    unknown = _unknown_names(_CHECKING_SANDBOX, tree, SUBJECT_VARIABLES)
    if unknown:
        raise TemplateProblem(
            f"uses unknown variable(s) {', '.join(unknown)} (known: {', '.join(SUBJECT_VARIABLES)})"
        )


def _check_directory(templates_dir: str) -> list[str]:
    """Compile every template file in ``templates_dir``; return the triplet names found."""
    folder = Path(templates_dir)
    if not folder.is_dir():
        raise TemplateProblem(f"templates_dir {templates_dir!r} is not a folder")
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith((".txt", ".html")))
    if len(files) > _MAX_FILES:
        raise TemplateProblem(f"templates_dir {templates_dir!r} holds over {_MAX_FILES} files")
    names: dict[str, None] = {}
    for filename in files:
        _load(environment(templates_dir), filename, folder / filename)
        for part in PARTS:
            if filename.endswith(part):
                if is_template_name(name := filename[: -len(part)]):
                    names[name] = None
                break
    return list(names)


def _load(env: Environment, filename: str, shown_as: Path | str) -> None:
    """Compile one template and check the names it uses (``TemplateNotFound`` passes)."""
    assert env.loader is not None
    try:
        source, _, _ = env.loader.get_source(env, filename)
        tree = env.parse(source)
        env.get_template(filename)  # compiled once here, then cached for every email
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{shown_as}, line {exc.lineno}: {exc.message}") from None
    except UnicodeDecodeError:
        raise TemplateProblem(f"{shown_as}: not UTF-8 text") from None
    known = DIGEST_VARIABLES if filename.startswith(DIGEST_TEMPLATE + ".") else TEMPLATE_VARIABLES
    unknown = _unknown_names(env, tree, known)
    if unknown:
        raise TemplateProblem(
            f"{shown_as} uses unknown variable(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def check_templates_statically(names: Iterable[str], templates_dir: str | None = None) -> None:
    """Every file in ``templates_dir`` compiles and uses only known variables, and each
    named template (and each triplet found there) has its three files.

    Raises `TemplateProblem` naming the template and the file.
    """
    found = _check_directory(templates_dir) if templates_dir is not None else []
    env = environment(templates_dir)
    where = f"templates_dir {templates_dir!r}" if templates_dir else "the packaged templates"
    for name in dict.fromkeys([*names, *found]):
        if not is_template_name(name):
            raise TemplateProblem(f"template {name!r}: not a template name (a-z, 0-9, _ and -)")
        for part in PARTS:
            try:
                _load(env, name + part, name + part)
            except TemplateNotFound:
                raise TemplateProblem(
                    f"template {name!r}: {name}{part} is missing from {where}"
                ) from None
            except TemplateError as exc:
                raise TemplateProblem(f"template {name!r}: {name}{part}: {exc}") from None


def check_route_templates(settings: Settings) -> None:
    """At start: every route's subject and template, and `[mail] templates_dir`, can work.

    Raises `herald.config.ConfigError` naming the route or the templates_dir file.
    """
    folder = settings.mail_templates_dir
    if folder is not None:
        try:
            check_templates_statically([], folder)
        except TemplateProblem as exc:
            raise ConfigError(f"[mail] templates_dir: {exc}") from None
    checked = {DEFAULT_TEMPLATE} if folder is None else set()  # packaged: tested with the code
    for route in settings.routes:
        try:
            if route.subject is not None:
                try:
                    check_subject(route.subject)
                except TemplateProblem as exc:
                    raise TemplateProblem(f"subject {exc}") from None
            if route.template == DIGEST_TEMPLATE:
                raise TemplateProblem(
                    f"template {DIGEST_TEMPLATE!r} is the digest email's (digest routes use "
                    "it); name another triplet"
                )
            if route.template not in checked:
                check_templates_statically([route.template], folder)
                checked.add(route.template)
        except TemplateProblem as exc:
            raise ConfigError(f"route {route.name!r}: {exc}") from None
