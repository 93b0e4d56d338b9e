"""Scoring every customer: in memory (pandas) against inside the engine (DuckDB, Spark).

    .venv/bin/python benchmarks/bench_scoring.py [--transactions 1e7 3e7 1e8] [--spark 1e7]
                                                 [--duckdb-memory 3GB]

For each generated log (the Parquet folders of bench_report_scale.py), three ways to go from
the log to a per-customer forecast with tiers written as Parquet, each in a fresh process:

* in memory - ``rfm_summary`` (the customer table in pandas), BG/NBD and Gamma-Gamma fit,
  ``forecast``, ``assign_tiers``, ``DataFrame.to_parquet``: what the report does;
* DuckDB - ``compressed_rfm`` (distinct histories only), fit with weights,
  ``score_customers``; DuckDB's own memory capped with ``SET memory_limit`` (it spills its sort
  to disk beyond that);
* Spark (local mode, two cores) - the same calls with ``engine="spark"``; the Python driver's
  peak is reported (the JVM is a separate process, its heap set by spark.driver.memory).

Reports seconds and the peak resident memory (VmHWM) of the Python process, side by side, and
the ratio engine / in memory.
"""

from __future__ import annotations

import argparse
import json

from _harness import machine_line, run_child, write_section
from bench_report_scale import make_log

IN_MEMORY = """
import clvmodels, tempfile, os
from clvmodels import scoring
t0 = time.perf_counter()
rfm = clvmodels.rfm_summary(FOLDER, time_unit="W")
m = clvmodels.BetaGeoModel().fit(rfm)
g = clvmodels.GammaGammaModel().fit(rfm)
fc = clvmodels.forecast(m, g, rfm, horizon=52, margin=0.3)
fc["tier"] = clvmodels.assign_tiers(fc).astype(str)
fc.to_parquet(os.path.join(tempfile.mkdtemp(), "fc.parquet"), partition_cols=["tier"])
_report(time.perf_counter() - t0, {"customers": len(rfm)})
"""

ENGINE = """
import clvmodels, tempfile, os
from clvmodels import scoring
from clvmodels.engine import duckdb_connection
if ENGINE == "duckdb":
    duckdb_connection().raw_sql(f"SET memory_limit='{LIMIT}'")
else:
    clvmodels.spark_connection("local[2]", {"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "16"})
t0 = time.perf_counter()
stats = scoring.compressed_rfm(FOLDER, time_unit="W", engine=ENGINE)
m, g = stats.fit(clvmodels.BetaGeoModel(), clvmodels.GammaGammaModel())
res = scoring.score_customers(m, g, FOLDER, os.path.join(tempfile.mkdtemp(), "fc"), horizon=52, margin=0.3,
                              engine=ENGINE)
_report(time.perf_counter() - t0, {"customers": res.customers, "histories": res.distinct_histories,
                                   "spend_rows": len(stats.spend)})
"""


def _attempt(code: str) -> dict:
    """One contender's result, or why it failed (e.g. killed for lack of memory)."""
    try:
        return run_child(code)
    except RuntimeError as exc:
        lines = [ln for ln in str(exc).splitlines()[1:] if ln.strip()]
        return {"failed": (lines[-1] if lines else "no output")[:80]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=float, nargs="+", default=[1e7, 3e7, 1e8])
    parser.add_argument("--spark", type=float, nargs="*", default=[1e7], help="sizes also run on Spark")
    parser.add_argument("--duckdb-memory", default="3GB")
    args = parser.parse_args()
    rows = []
    for n in (int(v) for v in args.transactions):
        folder = make_log(n)
        prelude = f"FOLDER = {str(folder)!r}\nLIMIT = {args.duckdb_memory!r}\n"
        mem = _attempt(prelude + IN_MEMORY)
        duck = _attempt(prelude + "ENGINE = 'duckdb'\n" + ENGINE)
        spark = _attempt(prelude + "ENGINE = 'spark'\n" + ENGINE) if n in {int(v) for v in args.spark} else None
        rows.append((n, mem, duck, spark))
        print(n, json.dumps(mem), json.dumps(duck), json.dumps(spark), flush=True)

    def cell(r: dict | None) -> str:
        if r is None:
            return "not run | not run"
        if "failed" in r:
            return f"failed ({r['failed']}) | -"
        return f"{r['seconds']:.0f} | {r['peak_mb'] / 1024:.2f}"

    def ratio(duck: dict, mem: dict) -> str:
        return "-" if "failed" in duck or "failed" in mem else f"{duck['peak_mb'] / mem['peak_mb']:.2f}"

    lines = [
        "### Scoring every customer: in memory vs inside the engine (`benchmarks/bench_scoring.py`)",
        "",
        f"Machine: {machine_line()}. Log -> per-customer forecast and tiers as Parquet (BG/NBD + Gamma-Gamma, "
        f"52 weeks). Seconds and peak memory (GiB) of the Python process; DuckDB capped at "
        f"{args.duckdb_memory} (`SET memory_limit`), Spark in local mode (driver JVM not counted).",
        "",
        "| transactions | customers | distinct histories | in memory s | GiB | DuckDB engine s | GiB | "
        "Spark engine s | GiB | memory DuckDB / in memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, mem, duck, spark in rows:
        known = duck if "failed" not in duck else mem
        lines.append(f"| {n:,} | {known.get('customers', 0):,} | {duck.get('histories', 0):,} | {cell(mem)} | "
                     f"{cell(duck)} | {cell(spark)} | {ratio(duck, mem)} |")
    table = "\n".join(lines)
    write_section("scoring", table)
    print(table)


if __name__ == "__main__":
    main()
