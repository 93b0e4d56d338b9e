"""The whole `clvmodels report` command, phase by phase: cells in a Jupyter kernel or in the
command's own process, side by side.

    .venv/bin/python benchmarks/bench_report_time.py [--repeats 2]

Two logs: the issue's small one (400 customers, 1 + Poisson(2.5) purchase days each over 182
days, about 1,400 rows; ``-p horizon 26``) and the bundled CDNOW master (23,570 customers).
Each runs through the command line as a user types it, with ``--kernel`` (the notebook in a
Jupyter kernel) and without (the default: the cells in the command's process), alternating, in
fresh processes, fastest of ``--repeats``. The phases are read from the command's own messages:
until ``running`` (imports, parameters, the input's first rows), the notebook (until
``exporting HTML``; of it, the analysis cell and the other cells as papermill recorded them in
the executed notebook), the export (until ``report written``) and the exit. Goals of issue 30 on
this 2-core machine: CDNOW at most 25 s, the small log at most 8 s.

Writes its table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import machine_line, write_section
from bench_report_load import make_log

CLI = [sys.executable, "-m", "clvmodels.cli", "report", "--no-progress"]
PHASES = (("start", "[clvmodels] running"), ("notebook", "[clvmodels] exporting HTML"),
          ("export", "[clvmodels] report written"))


def timed_report(args: list[str], out: Path) -> dict[str, float]:
    """One command run: seconds of each phase and in all (the messages' arrival times)."""
    t0 = time.perf_counter()
    seen: dict[str, float] = {}
    said: list[str] = []
    proc = subprocess.Popen([*CLI, *args, "--output", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)

    def read() -> None:
        for line in proc.stderr:
            said.append(line)
            for name, prefix in PHASES:
                if line.startswith(prefix) and name not in seen:
                    seen[name] = time.perf_counter() - t0

    reader = threading.Thread(target=read)
    reader.start()
    printed = proc.stdout.read()
    proc.wait()
    reader.join()
    total = time.perf_counter() - t0
    if proc.returncode != 0 or len(seen) != len(PHASES):
        raise RuntimeError(f"report failed ({proc.returncode}): {''.join(said)[-2000:]}")
    marks = [0.0] + [seen[name] for name, _ in PHASES] + [total]
    phases = {name: marks[i + 1] - marks[i] for i, (name, _) in enumerate(PHASES)}
    # inside the notebook: the analysis cell and the other cells (tables, figures, text), from
    # papermill's record of each cell in the executed notebook
    nb = json.loads((Path(printed.strip().splitlines()[-1]).parent / "report.ipynb").read_text())
    cells = [(c["source"] if isinstance(c["source"], str) else "".join(c["source"]),
              c["metadata"].get("papermill", {}).get("duration") or 0.0) for c in nb["cells"]]
    analysis = sum(d for src, d in cells if "run_analysis(" in src)
    return {**phases, "analysis": analysis, "other cells": sum(d for _, d in cells) - analysis,
            "exit": total - seen["export"], "total": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = make_log(400, Path(tmp) / "small.csv")
        logs = {"400 customers (the issue's random log)": ["--input", str(small), "-p", "horizon", "26"],
                "CDNOW master (23,570 customers)": ["--dataset", "cdnow-master"]}
        best: dict[tuple[str, str], dict[str, float]] = {}
        for _ in range(args.repeats):
            for log, flags in logs.items():
                for how, extra in (("kernel", ["--kernel"]), ("in process", [])):
                    r = timed_report([*flags, *extra], Path(tmp) / "out")
                    print(log, how, {k: round(v, 2) for k, v in r.items()}, flush=True)
                    if (log, how) not in best or r["total"] < best[(log, how)]["total"]:
                        best[(log, how)] = r
    lines = ["| log | cells run | until running s | notebook s (analysis cell, other cells) | export s | exit s "
             "| total s | vs kernel |", "|---|---|---|---|---|---|---|---|"]
    for (log, how), r in best.items():
        ratio = r["total"] / best[(log, "kernel")]["total"]
        lines.append(f"| {log} | {how} | {r['start']:.1f} | {r['notebook']:.1f} ({r['analysis']:.1f}, "
                     f"{r['other cells']:.1f}) | {r['export']:.1f} | {r['exit']:.1f} | {r['total']:.1f} | {ratio:.2f}x |")
    block = ("### The whole report command, kernel or in process (`benchmarks/bench_report_time.py`)\n\n"
             f"{machine_line()}; `clvmodels report` as typed (`--no-progress`), fastest of {args.repeats}, "
             "the two ways alternating; phases from the command's messages. Goal of issue 30: CDNOW at most "
             "25 s, the small log at most 8 s.\n\n" + "\n".join(lines))
    write_section("report_time", block)


if __name__ == "__main__":
    main()
