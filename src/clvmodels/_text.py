"""User text made safe to show and to name things by: inert inside Markdown, and a file-name
slug of a report's title. Used by the reporting side and by the comparison with earlier runs."""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["md_escape", "slug"]

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
