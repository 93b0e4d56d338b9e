"""RFM summaries from a Parquet file: clvmodels vs lifetimes vs a hand-written DuckDB query.

    .venv/bin/python benchmarks/bench_rfm.py [--sizes 1000000 10000000] [--repeats 3]

Each contender starts from the same Parquet file and ends with a one-row-per-customer pandas
table in days; lifetimes' time includes reading the file into pandas. Every measurement runs in
a fresh process (see _harness.py). Writes its table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _harness import DATA, machine_line, run_child, write_section

CONTENDERS = {
    "clvmodels": r"""
import clvmodels
t0 = time.perf_counter()
rfm = clvmodels.rfm_summary(sys.argv[1] if len(sys.argv) > 1 else PATH, time_unit="D", observation_end=END)
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
    "lifetimes": r"""
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
t0 = time.perf_counter()
df = pd.read_parquet(PATH)
rfm = summary_data_from_transaction_data(df, "customer_id", "date", monetary_value_col="amount",
                                         observation_period_end=END, freq="D")
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
    "duckdb SQL (floor)": r"""
import duckdb
con = duckdb.connect()
t0 = time.perf_counter()
rfm = con.sql(f'''
WITH daily AS (
  SELECT customer_id, CAST(date AS DATE) AS day, SUM(amount) AS amount
  FROM read_parquet('{PATH}') WHERE CAST(date AS DATE) <= DATE '{END}'
  GROUP BY ALL),
per AS (
  SELECT customer_id, MIN(day) AS first, MAX(day) AS last, COUNT(*) AS n,
         SUM(amount) AS total, arg_min(amount, day) AS first_amount
  FROM daily GROUP BY customer_id)
SELECT customer_id, n - 1 AS frequency, date_diff('day', first, last) AS recency,
       date_diff('day', first, DATE '{END}') AS T,
       CASE WHEN n > 1 THEN (total - first_amount) / (n - 1) ELSE 0 END AS monetary_value
FROM per ORDER BY customer_id''').df()
_report(time.perf_counter() - t0, {"customers": len(rfm)})
""",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        path, end = make_log(size)
        import pyarrow.parquet as pq

        n_rows = pq.ParquetFile(path).metadata.num_rows
        results = {}
        for name, code in CONTENDERS.items():
            prelude = f"PATH = {path!r}\nEND = {end!r}\n"
            results[name] = run_child(prelude + code, repeats=args.repeats)
            print(size, name, results[name], flush=True)
        assert len({r["customers"] for r in results.values()}) == 1
        ref = results["lifetimes"]
        floor = results["duckdb SQL (floor)"]
        for name, r in results.items():
            rows.append(
                f"| {n_rows:,} | {r['customers']:,} | {name} | {r['seconds']:.2f} | "
                f"{r['peak_mb']:,.0f} | {ref['seconds'] / r['seconds']:.1f}x | "
                f"{r['seconds'] / floor['seconds']:.2f}x | {r['peak_mb'] / ref['peak_mb']:.2f} |"
            )
    table = "\n".join([
        "### RFM summary from a Parquet file (`benchmarks/bench_rfm.py`)",
        "",
        f"Machine: {machine_line()}; best of {args.repeats} runs, each in a fresh process; "
        "peak = that process's memory high-water mark (VmHWM).",
        "",
        "| transactions | customers | tool | wall s | peak MB | speed-up vs lifetimes | time vs DuckDB floor | memory vs lifetimes |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("rfm", table)
    print(table)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
