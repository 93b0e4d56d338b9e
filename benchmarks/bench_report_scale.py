"""The report at scale: transactions in Parquet to finished report, stage by stage.

    .venv/bin/python benchmarks/bench_report_scale.py [--transactions 1e6 1e7 3e7 1e8] [--full-report]

For each size, a generated log (CDNOW-like BG/NBD + Gamma-Gamma customers over 78 weeks, about
2.9 transactions per customer) is written as a folder of Parquet files, in pieces of at most
10M transactions. A fresh process runs :func:`clvmodels.pipeline.run_analysis` on it with the
report's defaults (weekly unit, 52-week horizon, backtest split from the data, 100 draws) and
reports each stage's seconds and the process's peak memory (VmHWM). With ``--full-report`` the
whole ``clvmodels report`` command also runs (papermill, figures, HTML), timed as a whole, with
the peak memory of the Jupyter kernel that does the work. Goal of issue 10: 100M transactions
to a finished report in at most 10 minutes and 12 GiB on this 2-core machine.

Writes its table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import DATA, machine_line, run_child, write_section

PIECE = 10_000_000
PER_CUSTOMER = 2.87  # transactions per customer with the CDNOW parameters over 78 weeks


def make_log(n_transactions: int) -> Path:
    """A folder of Parquet pieces holding about ``n_transactions`` generated transactions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clvmodels.datasets import simulate_transactions

    folder = DATA / f"log_{n_transactions}"
    done = folder / "_complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    left, piece, offset = n_transactions, 0, 0
    while left > 0:
        n_cust = max(int(min(left, PIECE) / PER_CUSTOMER), 1)
        sim = simulate_transactions(n_cust, seed=1000 + piece, period=78.0, acquisition_period=12.0)
        t = sim.transactions
        t["customer_id"] += offset
        pq.write_table(pa.Table.from_pandas(t, preserve_index=False), folder / f"part-{piece:03d}.parquet")
        left -= len(t)
        offset += n_cust
        piece += 1
    done.write_text(json.dumps({"pieces": piece, "customers": offset}))
    return folder


STAGES = """
import clvmodels
from clvmodels import pipeline, reporting
cfg = reporting.validate_parameters({"input_path": FOLDER, "n_draws": 100})
t0 = time.perf_counter()
a = pipeline.run_analysis(cfg)
total = time.perf_counter() - t0
_report(total, {"stages": a.timings, "details": a.details, "customers": a.customers, "model": a.model_name})
"""

#: the floor of "load and RFM": one hand-written DuckDB query from the Parquet folder to the
#: customer table (kept in DuckDB, with its distinct histories, on the engine path; in pandas,
#: sorted, on the in-memory path), under the same memory budget as the report's DuckDB
FLOOR_RFM = r"""
import duckdb
from clvmodels.engine import engine_memory
con = duckdb.connect()
con.sql(f"SET memory_limit = '{engine_memory() // 1024**2}MiB'")
t0 = time.perf_counter()
per = (
    "WITH daily AS (SELECT customer_id, CAST(date AS DATE) AS day, SUM(amount) AS amount "
    f"FROM read_parquet('{FOLDER}/*.parquet') GROUP BY ALL), "
    "c AS (SELECT customer_id, MIN(day) AS first, MAX(day) AS last, COUNT(*) AS n, SUM(amount) AS total, "
    "arg_min(amount, day) AS first_amount FROM daily GROUP BY customer_id), "
    "e AS (SELECT MAX(last) AS end_day FROM c) "
    "SELECT customer_id, n - 1 AS frequency, date_diff('day', first, last) AS recency_days, "
    "date_diff('day', first, end_day) AS T_days, "
    "CASE WHEN n > 1 THEN (total - first_amount) / (n - 1) ELSE 0 END AS monetary_value FROM c, e")
if ENGINE:
    con.sql("CREATE TEMP TABLE per AS " + per)
    n = len(con.sql("SELECT frequency, recency_days, T_days, COUNT(*) FROM per GROUP BY ALL").df())
else:
    n = len(con.sql(per + " ORDER BY customer_id").df())
_report(time.perf_counter() - t0, {"rows": n})
"""

#: each stage's floor, one pass over what the stage must read: a child process ("child") or the
#: parts of the stage that are that pass, measured inside the run (keys of Analysis.details)
FLOORS = {
    "load and RFM": ("child", "the customer table by one hand-written DuckDB query"),
    "backtest: model choice": ("backtest: model choice: calibration table",
                               "the calibration/holdout table of the (sampled) log, one query"),
    "forecast and tiers": (("forecast and tiers: histories", "forecast and tiers: columns and write",
                            "forecast and tiers: tier table"),
                           "the distinct histories' forecast, every customer's columns and tier computed and "
                           "written, the tier table read back: the stage without its tier cut-offs"),
    "tier intervals": ("tier intervals: groups from the engine", "one group-by pass over the written scores"),
}


def full_report(folder: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-report-"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "clvmodels.cli", "report", "--input", str(folder), "--output",
                           str(out), "--no-progress", "-p", "title", "Scale benchmark"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    # the largest resident set of any waited-for descendant: the kernel doing the work
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--full-report", action="store_true")
    parser.add_argument("--from-log", help="re-render the table from the lines an earlier run printed")
    args = parser.parse_args()
    rows = []
    if args.from_log:
        decoder = json.JSONDecoder()
        for line in Path(args.from_log).read_text().splitlines():
            n, _, rest = line.partition(" ")
            if n.isdigit():
                r, end = decoder.raw_decode(rest)
                full, _ = decoder.raw_decode(rest[end:].strip())
                # customers as generated (older runs printed the figures' sample on the engine path)
                r["customers"] = json.loads((make_log(int(n)) / "_complete").read_text())["customers"]
                rows.append((int(n), r, full))
    floor_rows = []
    for n in ([] if args.from_log else (int(v) for v in args.transactions)):
        folder = make_log(n)
        r = run_child(f"FOLDER = {str(folder)!r}\n" + STAGES)
        engine = "sample for the figures" in r["stages"]
        floor_rows.append((n, r, run_child(f"FOLDER = {str(folder)!r}\nENGINE = {engine!r}\n" + FLOOR_RFM)))
        full = full_report(folder) if args.full_report else None
        rows.append((n, r, full))
        print(n, json.dumps(r), json.dumps(full), flush=True)
    # stages differ between the in-memory and the engine path: the union, in first-seen order
    stage_names: list[str] = []
    for _, r, _ in rows:
        stage_names += [s for s in r["stages"] if s not in stage_names]
    header = "| transactions | customers | model | customer table | " + " | ".join(stage_names) + \
        " | analysis total s | analysis peak GiB | whole report s | report peak GiB |"
    lines = [
        "### The report at scale (`benchmarks/bench_report_scale.py`)",
        "",
        f"Machine: {machine_line()}. Generated logs (CDNOW-like, 78 weeks) as Parquet folders; "
        "`pipeline.run_analysis` with the report's defaults (52-week horizon, backtest split from "
        "the data, 100 draws, scoring auto: the customer table in memory up to 10M customers, kept in "
        "DuckDB above) in a fresh process, seconds per stage (- where the path has no such stage); whole "
        "report = `clvmodels report` "
        "(papermill, figures, HTML) with the kernel's peak memory (the largest resident set of any child process so far; rows run smallest first, so it is the row's own). Goal: 100M transactions in at most "
        "600 s and 12 GiB.",
        "",
        header,
        "|" + "---:|" * (len(stage_names) + 8),
    ]
    for n, r, full in rows:
        stages = " | ".join(f"{r['stages'][s]:.1f}" if s in r["stages"] else "-" for s in stage_names)
        whole = (f"{full['seconds']:.0f} | {full['peak_mb'] / 1024:.1f}" if full else "not run | not run")
        table_where = "engine" if "sample for the figures" in r["stages"] else "memory"
        lines.append(f"| {n:,} | {r['customers']:,} | {r['model']} | {table_where} | {stages} | {r['seconds']:.1f} | "
                     f"{r['peak_mb'] / 1024:.1f} | {whole} |")
    table = "\n".join(lines)
    write_section("scale", table)
    print(table)
    if floor_rows:
        floors = stage_floor_table(floor_rows)
        write_section("stage_floors", floors)
        print(floors)


def stage_floor_table(floor_rows: list) -> str:
    """Each stage beside its floor: one pass over what the stage must read."""
    lines = [
        "### Each stage beside its floor (`benchmarks/bench_report_scale.py`)",
        "",
        f"Machine: {machine_line()}. The runs of the scale table: each stage's seconds beside the time of one "
        "pass over what the stage must read (its floor), and the ratio. The floor of loading is a separate fresh "
        "process running one hand-written DuckDB query under the same memory budget; the others are the part "
        "of the stage that is that pass, measured inside the run. Stages that compute on what is already in "
        "memory (model fits, scorecard, what-if) have no floor of this kind.",
        "",
        "| transactions | customers | customer table | stage | seconds | floor s | ratio | the floor |",
        "|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for n, r, rfm_floor in floor_rows:
        where = "engine" if "sample for the figures" in r["stages"] else "memory"
        for stage, (source, what) in FLOORS.items():
            details = r.get("details", {})
            keys = source if isinstance(source, tuple) else (source,)
            floor = (rfm_floor["seconds"] if source == "child" else
                     sum(details[k] for k in keys) if all(k in details for k in keys) else None)
            if stage not in r["stages"] or floor is None:
                continue
            secs = r["stages"][stage]
            lines.append(f"| {n:,} | {r['customers']:,} | {where} | {stage} | {secs:.1f} | {floor:.1f} | "
                         f"{secs / floor:.2f}x | {what} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
