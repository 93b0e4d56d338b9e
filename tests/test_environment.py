"""environment.yml (conda) must declare what pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge's names for the few packages that differ from PyPI
CONDA_NAMES = {"duckdb": "python-duckdb", "ibis-framework[duckdb]": "ibis-framework"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+(?:\[[A-Za-z0-9_,]+\])?)\s*(.*)", req)
    assert m, req
    return m.group(1), m.group(2).replace(" ", "")


def test_environment_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    extras = project["optional-dependencies"]
    for group in extras.values():
        wanted += [req for req in group if not req.startswith("clvmodels[")]  # own extras
    expected = {CONDA_NAMES.get(n, n): s for n, s in map(_split, wanted)}

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda: dict[str, str] = {}
    pip: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
            continue
        name, spec = _split(dep)
        conda[name] = spec
    assert conda.pop("python").startswith("=3.11")
    assert "pip" in conda and conda.pop("pip") == ""
    assert conda == expected, "environment.yml and pyproject.toml declare different dependencies"
    assert f'-e ".[{",".join(sorted(extras))}]"' in pip


def test_wheel_ships_templates_and_data(tmp_path):
    """A built wheel holds the report templates and the bundled data (pip install of the
    wheel, not only an editable checkout, can run reports)."""
    import subprocess
    import sys
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("clvmodels-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("clvmodels/templates/clv_report.ipynb", "clvmodels/templates/model_validation.ipynb",
                   "clvmodels/templates/explore.ipynb", "clvmodels/data/CDNOW_master.txt.gz",
                   "clvmodels/data/CDNOW_sample.txt.gz", "clvmodels/data/donations.csv", "clvmodels/py.typed"):
        assert needed in names, needed
