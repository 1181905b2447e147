"""Mail templates: ``NAME.txt`` (first line ``Subject: ...``) and ``NAME.html`` for each message.

The package's templates live in ``hecate/mail/templates/``. A deployer overrides any of them,
including ``_layout.html`` and ``_macros.html``, by putting a file of the same name in
MAIL_TEMPLATES_DIR; that directory is searched first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

from . import MailError

PACKAGE_TEMPLATES = Path(__file__).with_name("templates")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT = re.compile(r"Subject:[ \t]*(.*)")


def build_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(PACKAGE_TEMPLATES))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        # Usernames are chosen by whoever registers: everything interpolated into HTML is escaped.
        # Plain text has nothing to escape, and escaping would mangle `&` in links.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm"),
                                            default_for_string=False, default=False),
        # A template that uses a variable the caller did not pass fails loudly, in tests.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class Templates:
    """The environment, and each text template split into its subject line and its body.

    The subject is taken from the template's first line before rendering, so a value holding a
    line break (a username) can neither cut the subject short nor move text into it."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.environment = build_environment(templates_dir)
        self._text: dict[str, tuple[jinja2.Template, jinja2.Template]] = {}

    def _text_templates(self, name: str) -> tuple[jinja2.Template, jinja2.Template]:
        if name not in self._text:
            loader = self.environment.loader
            assert loader is not None
            source, _, _ = loader.get_source(self.environment, f"{name}.txt")
            first, _, body = source.partition("\n")
            match = _SUBJECT.fullmatch(first.strip())
            if not match or not match.group(1).strip():
                raise MailError(f"mail template {name}.txt must start with a 'Subject: ...' line")
            self._text[name] = (self.environment.from_string(match.group(1)),
                                self.environment.from_string(body.lstrip("\r\n")))
        return self._text[name]

    def render(self, name: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """``(subject, text, html)`` of the message ``name``."""
        if not _NAME.fullmatch(name):
            raise MailError(f"mail template name {name!r} is not a plain name")
        try:
            subject_template, text_template = self._text_templates(name)
            # One line, whatever a value holds: a line break in a header would add headers.
            subject = " ".join(subject_template.render(context).split())
            if not subject:
                raise MailError(f"mail template {name}.txt renders an empty subject")
            text = text_template.render(context)
            html = self.environment.get_template(f"{name}.html").render(context, subject=subject)
        except jinja2.TemplateNotFound as error:
            raise MailError(f"mail template {error.name} was not found") from error
        except jinja2.TemplateError as error:
            # Jinja's message names the problem, never the rendered text.
            raise MailError(f"mail template {name}: {type(error).__name__}: {error}") from error
        return subject, text, html
