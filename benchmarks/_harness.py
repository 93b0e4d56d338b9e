"""Shared benchmark machinery: run each contender in a fresh process, record wall time and peak RSS.

A fresh interpreter per measurement keeps peak memory honest (nothing left over from an earlier
contender) and every contender pays the same import cost outside the timed region.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
README = HERE / "README.md"

CHILD_PRELUDE = r"""
import json, resource, sys, time
def _peak_mb():
    # VmHWM belongs to this process's address space, which execve made new; ru_maxrss would
    # also count the parent's memory at fork time
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def _report(seconds, extra=None):
    peak_mb = _peak_mb()
    print("RESULT " + json.dumps({"seconds": seconds, "peak_mb": peak_mb, **(extra or {})}))
"""


def run_child(code: str, repeats: int = 1) -> dict:
    """Run ``code`` (which calls ``_report``) in a new interpreter; keep the fastest of repeats."""
    best = None
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD_PRELUDE + code], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        result = json.loads(line[len("RESULT "):])
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def machine_line() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, markdown: str) -> None:
    """Replace the section between <!-- name:start --> and <!-- name:end --> in README.md."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def against_reference(n: int, prelude: str, tasks: dict[str, str], reference: tuple[str, str], repeats: int,
                      label: Any = None) -> list[str]:
    """Run each task and the reference (name, code) in fresh processes after ``prelude``; table
    rows with time and memory as ratios over the reference. ``label(name, result)`` may add to a
    row's name (e.g. what the run chose)."""
    ref_name, ref_code = reference
    ref = run_child(prelude + ref_code, repeats)
    results = {name: run_child(prelude + code, repeats) for name, code in tasks.items()}
    results[ref_name] = ref
    rows = []
    for name, r in results.items():
        shown = name + (label(name, r) if label else "")
        rows.append(f"| {n:,} | {shown} | {r['seconds']:.2f} | {r['peak_mb']:,.0f} | "
                    f"{r['seconds'] / ref['seconds']:.2f} | {r['peak_mb'] / ref['peak_mb']:.2f} |")
        print(rows[-1], flush=True)
    return rows
