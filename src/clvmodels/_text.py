"""User text made safe to show, to write and to name things by: inert inside Markdown, inert in
a spreadsheet (CSV), and a file-name slug of a report's title. Used by the reporting side and by the comparison with earlier runs."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["md_escape", "slug", "write_csv"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md_escape(text: Any) -> str:
    """User text made inert inside Markdown: HTML escaped (no tags, no scripts) and Markdown's
    own syntax characters backslash-escaped (no links, images or emphasis)."""
    # quotes need no escaping in Markdown text (no attribute to break out of); escaped, their
    # "&#x27;" would be shown as such once its "#" is backslash-escaped below
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))
    # a bare address ("https://...", "www.") would be turned into a live link by the Markdown
    # renderer; as character references the colon and the dot read the same but link nothing
    return escaped.replace(":", "&#58;").replace("www\\.", "www&#46;").replace("@", "&#64;")


def slug(text: str) -> str:
    """``text`` as a lower-case file name of letters, digits and dashes (at most 60; "report"
    when nothing is left)."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:60] or "report"


#: first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV with every text cell and label that a spreadsheet would run as a
    formula (starting with ``= + - @``, tab or carriage return) prefixed with a single quote, as
    OWASP recommends against CSV injection; numbers are written as they are. Customer ids are
    the text most at risk: an id ``=HYPERLINK(...)`` opens as text, not as a live formula."""
    out = table.copy(deep=False)
    if out.index.dtype == object or isinstance(out.index.dtype, pd.StringDtype):
        out.index = pd.Index([_neutral(v) for v in out.index], name=out.index.name)
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].map(_neutral)
    out.to_csv(path)
    return path
