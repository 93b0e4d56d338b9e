"""Writing a measured table into validation/README.md between its markers."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(marker: str, block: str) -> None:
    """Replace the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` (appended
    when the markers are not there yet)."""
    text = README.read_text()
    new = f"<!-- {marker}:start -->\n{block}\n<!-- {marker}:end -->"
    pattern = rf"<!-- {re.escape(marker)}:start -->.*<!-- {re.escape(marker)}:end -->"
    if re.search(pattern, text, flags=re.S):
        text = re.sub(pattern, lambda _: new, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + new + "\n"
    README.write_text(text)
