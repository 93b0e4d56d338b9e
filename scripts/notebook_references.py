"""Reference outputs for the notebook cells nbval checks, kept beside the clean templates.

    .venv/bin/python scripts/notebook_references.py refresh   # re-run templates, record outputs
    .venv/bin/python scripts/notebook_references.py build     # copies for nbval (make test does it)

Templates in notebooks/ are committed without outputs or execution counts. nbval compares the
cells marked ``# NBVAL_CHECK_OUTPUT`` against outputs stored in the notebook it runs, so
``build`` writes copies to build/nbval/ with the reference outputs from
notebooks/expected_outputs.json filled in; ``refresh`` records them after a change to what
such a cell prints (and strips the templates).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "notebooks"
REFERENCES = TEMPLATES / "expected_outputs.json"
BUILD = ROOT / "build" / "nbval"
MARK = "NBVAL_CHECK_OUTPUT"


def _checked(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and MARK in c.source]


def refresh() -> None:
    from nbclient import NotebookClient

    references: dict[str, list[dict]] = {}
    for path in sorted(TEMPLATES.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, str(path))
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()
        references[path.name] = [{"source": c.source, "outputs": c.outputs} for c in _checked(nb)]
        print("refreshed", path.relative_to(ROOT))
    REFERENCES.write_text(json.dumps(references, indent=1, sort_keys=True) + "\n")


def build() -> None:
    references = json.loads(REFERENCES.read_text())
    BUILD.mkdir(parents=True, exist_ok=True)
    for path in sorted(TEMPLATES.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        stored = {r["source"]: r["outputs"] for r in references.get(path.name, [])}
        for cell in _checked(nb):
            if cell.source not in stored:
                sys.exit(f"{path.name}: a checked cell has no reference output; run "
                         "scripts/notebook_references.py refresh")
            cell.outputs = [nbformat.from_dict(o) for o in stored[cell.source]]
            cell.execution_count = 1  # nbval only compares cells that look run
        nbformat.write(nb, str(BUILD / path.name))


if __name__ == "__main__":
    {"refresh": refresh, "build": build}[sys.argv[1] if len(sys.argv) > 1 else "build"]()
