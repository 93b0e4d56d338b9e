"""Re-execute the notebook templates and keep only the outputs nbval checks.

    .venv/bin/python scripts/refresh_notebooks.py

Templates are committed without outputs, except the cells marked ``# NBVAL_CHECK_OUTPUT``:
nbval compares those against what a fresh run prints, so their reference output must be
stored. Run this after changing what such a cell prints.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def refresh(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    executed = nbformat.read(str(path), as_version=4)
    NotebookClient(executed, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell, ran in zip(nb.cells, executed.cells, strict=True):
        if cell.cell_type != "code":
            continue
        checked = "NBVAL_CHECK_OUTPUT" in cell.source
        # nbval only compares cells that look run, so checked cells keep a count
        cell.execution_count = 1 if checked else None
        cell.outputs = ran.outputs if checked else []
    nbformat.write(nb, str(path))
    print("refreshed", path.relative_to(ROOT))


if __name__ == "__main__":
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        refresh(nb_path)
