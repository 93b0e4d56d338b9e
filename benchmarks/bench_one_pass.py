"""The report's first stage - read, validate, learn the windows and the customer count, build the
customer table - in one pass or two, beside the hand-written query (issue 19).

    .venv/bin/python benchmarks/bench_one_pass.py [--transactions 1e6 1e7 3e7 1e8] [--formats parquet csv]
        [--csv-up-to 3e7] [--repeats 3]

Contenders, each in a fresh process from the same file (the logs of bench_rfm.py up to 10M
transactions, of bench_report_scale.py above; CSV copies written once):

* "one pass": what the report does now, :func:`clvmodels.rfm.summarise_log` with the report's
  settings (weeks; the customer table in memory up to 10M customers, else kept by the engine
  and compressed to distinct histories as the engine path does): one pass over a CSV, the
  validation scan and the aggregation for Parquet;
* "two passes": what it did before - :func:`clvmodels.load_transactions` (its validation pass),
  then the windows and the customer table from the validated log (``rfm_summary``, or
  ``compressed_rfm`` when the engine keeps the table);
* "floor": one hand-written DuckDB query from the file to the same customer table (in memory,
  sorted; or kept in DuckDB with its distinct histories), validating nothing and letting DuckDB
  guess a CSV's types.

Writes its table into benchmarks/README.md ("one_pass").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _harness import DATA, machine_line, run_child, write_section

SETUP = r"""
import clvmodels
from clvmodels import pipeline, reporting, scoring
clvmodels.engine.duckdb_connection()
cfg = reporting.validate_parameters({"input_path": PATH, "calibration_end": "none"})
"""

CONTENDERS = {
    "one pass": SETUP + r"""
from clvmodels.rfm import summarise_log
t0 = time.perf_counter()
source, options = pipeline.report_source(cfg)
s = summarise_log(source, time_unit=cfg.time_unit, keep=pipeline._customer_table_home(cfg, source),
                  engine_above=pipeline.ENGINE_SCORING_ABOVE, **options)
obs, cal = pipeline.resolve_windows(cfg, s.log)
n = len(s.rfm) if s.rfm is not None else scoring.compressed_rfm(s.log, time_unit="W", observation_end=obs).customers
_report(time.perf_counter() - t0, {"customers": n, "home": "memory" if s.rfm is not None else "engine"})
""",
    "two passes": SETUP + r"""
from clvmodels.transactions import log_facts
t0 = time.perf_counter()
log = reporting.load_report_transactions(cfg)
obs, cal = pipeline.resolve_windows(cfg, log)
if log_facts(log)["customers_approx"] <= pipeline.ENGINE_SCORING_ABOVE:
    n = len(clvmodels.rfm_summary(log, time_unit="W", observation_end=obs))
else:
    n = scoring.compressed_rfm(log, time_unit="W", observation_end=obs).customers
_report(time.perf_counter() - t0, {"customers": n})
""",
    "floor": r"""
import duckdb
from clvmodels.engine import engine_memory
con = duckdb.connect()
con.sql(f"SET memory_limit = '{engine_memory() // 1024**2}MiB'")
t0 = time.perf_counter()
per = (
    "WITH daily AS (SELECT customer_id, CAST(date AS DATE) AS day, SUM(amount) AS amount "
    f"FROM {READER} GROUP BY ALL), "
    "c AS (SELECT customer_id, MIN(day) AS first, MAX(day) AS last, COUNT(*) AS n, SUM(amount) AS total, "
    "arg_min(amount, day) AS first_amount FROM daily GROUP BY customer_id), "
    "e AS (SELECT MAX(last) AS end_day FROM c) "
    "SELECT customer_id, n - 1 AS frequency, date_diff('day', first, last) / 7.0 AS recency, "
    "date_diff('day', first, end_day) / 7.0 AS T, "
    "CASE WHEN n > 1 THEN (total - first_amount) / (n - 1) ELSE 0 END AS monetary_value FROM c, e")
if ENGINE:
    con.sql("CREATE TEMP TABLE per AS " + per)
    con.sql("SELECT frequency, recency, T, COUNT(*) FROM per GROUP BY ALL").df()
    n = con.sql("SELECT COUNT(*) FROM per").fetchall()[0][0]
else:
    n = len(con.sql(per + " ORDER BY customer_id").df())
_report(time.perf_counter() - t0, {"customers": n})
""",
}


def log_of(n: int) -> Path:
    """The Parquet log of about ``n`` transactions the other benchmarks generate (made here when missing)."""
    import bench_report_scale
    import bench_rfm

    if n <= 10_000_000:
        return Path(bench_rfm.make_log(n)[0])
    return bench_report_scale.make_log(n)


def csv_copy(parquet: Path) -> Path:
    out = parquet.with_suffix(".csv") if parquet.is_file() else DATA / f"{parquet.name}.csv"
    if not out.exists():
        import duckdb

        source = f"{parquet}/*.parquet" if parquet.is_dir() else str(parquet)
        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{source}')) TO '{out}' (HEADER)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--formats", nargs="+", choices=["parquet", "csv"], default=["parquet", "csv"])
    parser.add_argument("--csv-up-to", type=float, default=3e7, help="largest log also measured as CSV")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for n in (int(x) for x in args.transactions):
        parquet = log_of(n)
        for fmt in [f for f in args.formats if f == "parquet" or n <= args.csv_up_to]:
            path = parquet if fmt == "parquet" else csv_copy(parquet)
            if fmt == "csv":
                reader = f"read_csv('{path}')"
            else:
                reader = f"read_parquet('{parquet}/*.parquet')" if parquet.is_dir() else f"read_parquet('{parquet}')"
            results = {}
            for name, code in CONTENDERS.items():
                engine = results.get("one pass", {}).get("home") == "engine"
                prelude = f"PATH = {str(path)!r}\nREADER = {reader!r}\nENGINE = {engine!r}\n"
                results[name] = run_child(prelude + code, repeats=args.repeats)
                print(n, fmt, name, results[name], flush=True)
            assert len({r["customers"] for r in results.values()}) == 1, results
            floor, two = results["floor"]["seconds"], results["two passes"]["seconds"]
            for name, r in results.items():
                rows.append(f"| {n:,} | {r['customers']:,} | {fmt} | {results['one pass']['home']} | {name} | "
                            f"{r['seconds']:.2f} | {r['peak_mb']:,.0f} | {r['seconds'] / two:.2f}x | "
                            f"{r['seconds'] / floor:.2f}x |")
    table = "\n".join([
        "### The report's first stage: one pass or two (`benchmarks/bench_one_pass.py`)",
        "",
        f"Machine: {machine_line()}; best of {args.repeats} runs, each in a fresh process; peak = VmHWM. "
        "Each contender reads the log, validates it (the floor does not), learns the observation end and "
        "the number of customers, and builds the customer table: in memory up to 10M customers, else "
        "kept by the engine and compressed to distinct histories. \"one pass\" is the report now "
        "(`clvmodels.rfm.summarise_log`: a CSV is read once with the checks folded into the aggregation; "
        "Parquet keeps its 3-column validation scan, so both contenders do the same there), "
        "\"two passes\" is `load_transactions` and then the table, as the report did before.",
        "",
        "| transactions | customers | file | customer table | contender | wall s | peak MB | time vs two passes "
        "| time vs floor |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("one_pass", table)
    print(table)


if __name__ == "__main__":
    main()
