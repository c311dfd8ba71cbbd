"""Mail templates: ``templates/mail/<locale>/<name>.txt``, first line ``Subject: …``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from kunde.messaging.models import pick_locale

MAIL_DIR = Path(__file__).parent / "templates" / "mail"
ZERO_DECIMAL = frozenset({"JPY", "KRW", "ISK", "CLP", "VND"})


class TemplateMissing(Exception):
    pass


def money(amount_minor: int | None, currency: str | None = None) -> str:
    """``12345, "DKK"`` → ``"123.45 DKK"`` (plain, locale-neutral)."""
    if amount_minor is None:
        return ""
    cur = (currency or "").upper()
    if cur in ZERO_DECIMAL:
        return f"{amount_minor} {cur}".strip()
    sign = "-" if amount_minor < 0 else ""
    whole, cents = divmod(abs(int(amount_minor)), 100)
    return f"{sign}{whole}.{cents:02d} {cur}".strip()


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    # Plain-text mail (``.txt``) is sent as text/plain: HTML escaping would corrupt it
    # ("&amp;" in a subject), and no mail client renders it as markup, so it stays
    # unescaped on purpose. Any HTML template (``.html``/``.htm``/``.xml``) is autoescaped.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(MAIL_DIR)),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml"),
            disabled_extensions=("txt",),
            default_for_string=False,
            default=False,
        ),
        keep_trailing_newline=False,
        trim_blocks=True,
    )
    env.filters["money"] = money
    return env


def template_exists(name: str) -> bool:
    return (MAIL_DIR / "en" / f"{name}.txt").is_file()


def render(name: str, locale: str | None, context: dict[str, Any]) -> tuple[str, str, str]:
    """Render a mail; returns (locale used, subject, body). Falls back to English."""
    loc = pick_locale(locale)
    if not (MAIL_DIR / loc / f"{name}.txt").is_file():
        loc = "en"
    if not (MAIL_DIR / loc / f"{name}.txt").is_file():
        raise TemplateMissing(f"no mail template {name!r}")
    text = environment().get_template(f"{loc}/{name}.txt").render(**context)
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject:"):
        raise TemplateMissing(f"template {loc}/{name}.txt must start with 'Subject:'")
    return loc, first[len("Subject:"):].strip(), rest.strip() + "\n"
