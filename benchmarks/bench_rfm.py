"""RFM summaries and calibration/holdout tables from a Parquet or CSV file: clvmodels vs
lifetimes vs a hand-written DuckDB query (issue 19: within 1.1x of that floor).

    .venv/bin/python benchmarks/bench_rfm.py [--sizes 1000000 10000000] [--formats parquet csv] [--repeats 3]

Each contender starts from the same file and ends with a one-row-per-customer pandas table in
days. clvmodels runs two ways: ``rfm_summary(path)`` (one call: a CSV is read once, its
validation folded into the customer aggregation; Parquet gets the validation pass, a scan of
three columns) and ``rfm_summary(load_transactions(path))`` (loaded first: always the
validation pass, then the aggregation); lifetimes' time includes reading the file into pandas;
the DuckDB connections (clvmodels' and the floor's) are opened before the clock starts. Every
measurement runs in a fresh process (see _harness.py). Writes its table into
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _harness import DATA, machine_line, run_child, write_section

#: the floor's customer table of the purchases up to {end}: one DuckDB query
FLOOR = """
WITH daily AS (
  SELECT customer_id, CAST(date AS DATE) AS day, SUM(amount) AS amount
  FROM {reader}('{path}') WHERE CAST(date AS DATE) <= DATE '{end}'
  GROUP BY ALL),
per AS (
  SELECT customer_id, MIN(day) AS first, MAX(day) AS last, COUNT(*) AS n,
         SUM(amount) AS total, arg_min(amount, day) AS first_amount
  FROM daily GROUP BY customer_id)
SELECT customer_id, n - 1 AS frequency, date_diff('day', first, last) AS recency,
       date_diff('day', first, DATE '{end}') AS T,
       CASE WHEN n > 1 THEN (total - first_amount) / (n - 1) ELSE 0 END AS monetary_value
FROM per"""

HOLDOUT = """
WITH c AS ({calibration}),
h AS (SELECT customer_id, COUNT(DISTINCT CAST(date AS DATE)) AS frequency_holdout, SUM(amount) AS revenue_holdout
      FROM {reader}('{path}')
      WHERE CAST(date AS DATE) > DATE '{cal}' AND CAST(date AS DATE) <= DATE '{end}' GROUP BY customer_id)
SELECT c.*, COALESCE(h.frequency_holdout, 0) AS frequency_holdout,
       COALESCE(h.revenue_holdout / h.frequency_holdout, 0) AS monetary_value_holdout,
       COALESCE(h.revenue_holdout, 0) AS revenue_holdout
FROM c LEFT JOIN h USING (customer_id) ORDER BY customer_id"""

#: each task's contenders (PATH, END, CAL: the log, the observation end, the calibration end)
TASKS = {
    "RFM": {
        "clvmodels rfm_summary(path)": r"""
import clvmodels
clvmodels.engine.duckdb_connection()  # opened before the clock, as the floor's connection
t0 = time.perf_counter()
rfm = clvmodels.rfm_summary(PATH, time_unit="D", observation_end=END)
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
        "clvmodels load, then rfm_summary": r"""
import clvmodels
clvmodels.engine.duckdb_connection()  # opened before the clock, as the floor's connection
t0 = time.perf_counter()
rfm = clvmodels.rfm_summary(clvmodels.load_transactions(PATH), time_unit="D", observation_end=END)
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
        "lifetimes": r"""
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
t0 = time.perf_counter()
df = READ(PATH)
rfm = summary_data_from_transaction_data(df, "customer_id", "date", monetary_value_col="amount",
                                         observation_period_end=END, freq="D")
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
        "duckdb SQL (floor)": r"""
import duckdb
con = duckdb.connect()
t0 = time.perf_counter()
rfm = con.sql(FLOOR.format(reader=READER, path=PATH, end=END) + " ORDER BY customer_id").df()
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
    },
    "calibration/holdout": {
        "clvmodels load, then calibration_holdout": r"""
import clvmodels
clvmodels.engine.duckdb_connection()  # opened before the clock, as the floor's connection
t0 = time.perf_counter()
cal = clvmodels.calibration_holdout(clvmodels.load_transactions(PATH), calibration_end=CAL, observation_end=END,
                                    time_unit="D")
_report(time.perf_counter() - t0, {"customers": len(cal)})
""",
        "lifetimes": r"""
import pandas as pd
from lifetimes.utils import calibration_and_holdout_data
t0 = time.perf_counter()
df = READ(PATH)
cal = calibration_and_holdout_data(df, "customer_id", "date", calibration_period_end=CAL,
                                   observation_period_end=END, freq="D", monetary_value_col="amount")
_report(time.perf_counter() - t0, {"customers": len(cal)})
""",
        "duckdb SQL (floor)": r"""
import duckdb
con = duckdb.connect()
t0 = time.perf_counter()
sql = HOLDOUT.format(calibration=FLOOR.format(reader=READER, path=PATH, end=CAL), reader=READER, path=PATH, cal=CAL,
                     end=END)
cal = con.sql(sql).df()
_report(time.perf_counter() - t0, {"customers": len(cal)})
""",
    },
}

def make_log(n_transactions: int) -> tuple[str, str]:
    """Generate (once) a Parquet log of about n_transactions purchases; return (path, end date)."""
    from clvmodels.datasets import simulate_transactions

    DATA.mkdir(exist_ok=True)
    path = DATA / f"log_{n_transactions}.parquet"
    end = "2021-07-01"
    if not path.exists():
        # CDNOW-like parameters give about 2.8 purchases per customer over 78 weeks
        n_customers = int(n_transactions / 2.8)
        t0 = time.perf_counter()
        tx, _ = simulate_transactions(n_customers, seed=42)
        print(f"generated {len(tx):,} transactions for {n_customers:,} customers in "
              f"{time.perf_counter() - t0:.1f} s")
        tx.to_parquet(path, index=False)
    return str(path), end


def csv_copy(path: str) -> str:
    """The Parquet log written once as CSV text (ISO dates, as exported by most shops)."""
    out = path.replace(".parquet", ".csv")
    if not Path(out).exists():
        import duckdb

        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{path}')) TO '{out}' (HEADER)")
    return out


READERS = {"parquet": ("read_parquet", "pd.read_parquet"),
           "csv": ("read_csv", "lambda p: pd.read_csv(p, parse_dates=['date'])")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--formats", nargs="+", choices=sorted(READERS), default=["parquet", "csv"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        parquet, end = make_log(size)
        import pyarrow.parquet as pq

        n_rows = pq.ParquetFile(parquet).metadata.num_rows
        cal = "2021-01-01"
        for fmt in args.formats:
            path = parquet if fmt == "parquet" else csv_copy(parquet)
            reader, read = READERS[fmt]
            for task, contenders in TASKS.items():
                results = {}
                for name, code in contenders.items():
                    prelude = (f"PATH = {path!r}\nEND = {end!r}\nCAL = {cal!r}\nFLOOR = {FLOOR!r}\n"
                               f"HOLDOUT = {HOLDOUT!r}\nREADER = {reader!r}\nimport pandas as pd\nREAD = {read}\n")
                    results[name] = run_child(prelude + code, repeats=args.repeats)
                    print(size, fmt, task, name, results[name], flush=True)
                assert len({r["customers"] for r in results.values()}) == 1
                ref = results["lifetimes"]
                floor = results["duckdb SQL (floor)"]
                for name, r in results.items():
                    rows.append(
                        f"| {n_rows:,} | {r['customers']:,} | {fmt} | {task} | {name} | {r['seconds']:.2f} | "
                        f"{r['peak_mb']:,.0f} | {ref['seconds'] / r['seconds']:.1f}x | "
                        f"{r['seconds'] / floor['seconds']:.2f}x | {r['peak_mb'] / ref['peak_mb']:.2f} |"
                    )
    table = "\n".join([
        "### RFM summary and calibration/holdout table from a Parquet or CSV file (`benchmarks/bench_rfm.py`)",
        "",
        f"Machine: {machine_line()}; best of {args.repeats} runs, each in a fresh process; "
        "peak = that process's memory high-water mark (VmHWM). clvmodels' times include reading and "
        "validating the log: `rfm_summary(path)` reads a CSV once (validation folded into the customer "
        "aggregation) and a Parquet file twice (a scan of three columns to validate, then the aggregation); "
        "loaded first, the log always gets its own validation pass. The floor is one hand-written DuckDB "
        "query to a customer-sorted pandas table (it validates nothing; on CSV it lets DuckDB guess the "
        "types, where clvmodels reads ids and dates as text and parses dates one stated way); lifetimes' "
        "time includes reading the file.",
        "",
        "| transactions | customers | file | task | tool | wall s | peak MB | speed-up vs lifetimes | "
        "time vs DuckDB floor | memory vs lifetimes |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("rfm", table)
    print(table)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
