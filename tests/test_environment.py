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
        wanted += group
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
