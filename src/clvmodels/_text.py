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


#: words of a column name that make it money (rounded to cents in CSVs) unless a word of
#: :data:`NOT_MONEY` says it is a share, a percentage or a probability of it
MONEY_WORDS = ("clv", "revenue", "spend", "value", "budget", "cost", "margin", "cash")
NOT_MONEY = ("share", "pct", "percent", "probability", "ratio", "p_")


def is_money(column: object) -> bool:
    """Whether a column holds money, by its name (``total_clv``, ``expected_spend``, ``value_at_risk``
    yes; ``share_of_clv``, ``change_pct`` no)."""
    name = str(column).lower()
    return any(w in name for w in MONEY_WORDS) and not any(w in name for w in NOT_MONEY)


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV for people and spreadsheets: money (:func:`is_money`) in cents, other
    numbers to 10 significant digits (the Parquet files keep full precision), and every text
    cell and label that a spreadsheet would run as a formula (starting with ``= + - @``, tab or
    carriage return) prefixed with a single quote, as OWASP recommends against CSV injection.
    Customer ids are the text most at risk: an id ``=HYPERLINK(...)`` opens as text, not as a live
    formula."""
    out = table.copy(deep=False)
    if out.index.dtype == object or isinstance(out.index.dtype, pd.StringDtype):
        out.index = pd.Index([_neutral(v) for v in out.index], name=out.index.name)
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].map(_neutral)
        elif pd.api.types.is_float_dtype(out[col]) and is_money(col):
            out[col] = out[col].round(2)
    out.to_csv(path, float_format="%.10g")
    return path
