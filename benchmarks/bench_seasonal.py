"""What a calendar costs: the seasonal Pareto/NBD beside Pareto/NBD (clvmodels and lifetimes).

    .venv/bin/python benchmarks/bench_seasonal.py [--sizes 10000 100000] [--repeats 1]

For each size, a generated log of Pareto/NBD customers with a season in the purchase rate and
in the dropout hazard (``validation/worlds.py``'s ``simulate_pareto_calendar``, customers
acquired over two years, 160 weeks, weeks) is summarised once to an RFM table with its purchase
calendar (``rfm_summary(..., calendar=True)``, saved as Parquet plus the calendar). Each task
runs in a fresh process: the fit, and the scores (P(alive) and expected purchases over 52
weeks for every customer) from known parameters. Compared with clvmodels' Pareto/NBD and
lifetimes' ParetoNBDFitter on the same table: neither has a calendar, so the ratios say what the
season costs, not who is faster at the same model (no peer fits a dynamic-covariate Pareto/NBD
in Python; CLVTools' is R). Writes its table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _harness import DATA, machine_line, run_child, write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))

LOAD = """
import json
import pandas as pd
from clvmodels.rfm import PurchaseCalendar
rfm = pd.read_parquet(PATH)
rfm.attrs.update(json.loads(open(PATH + '.json').read()))
cal = rfm.attrs.pop('calendar')
rfm.attrs['purchase_calendar'] = PurchaseCalendar(start=cal['start'], end=cal['end'], counts=tuple(cal['counts']))
"""
PNBD = {"r": 0.6, "alpha": 4.0, "s": 0.8, "beta": 40.0}

TASKS = {
    "fit": {
        "clvmodels seasonal Pareto/NBD": """
import clvmodels
t0 = time.perf_counter(); m = clvmodels.SeasonalParetoNBDModel().fit(rfm)
_report(time.perf_counter() - t0, {"ll": m.log_likelihood_})""",
        "clvmodels Pareto/NBD": """
import clvmodels
t0 = time.perf_counter(); m = clvmodels.ParetoNBDModel().fit(rfm); _report(time.perf_counter() - t0)""",
        "lifetimes Pareto/NBD": """
from lifetimes import ParetoNBDFitter
t0 = time.perf_counter(); m = ParetoNBDFitter().fit(rfm.frequency, rfm.recency, rfm["T"]); _report(time.perf_counter() - t0)""",
    },
    "score P(alive) + E[purchases, 52 weeks]": {
        "clvmodels seasonal Pareto/NBD": """
import clvmodels
m = clvmodels.SeasonalParetoNBDModel.from_params(PNBD, time_unit="W", calendar={
    "coefficients": [0.5, 0.0, 0.0, 0.0, 0.0, 0.8], "as_of": rfm.attrs["observation_end"]})
t0 = time.perf_counter(); pa = m.probability_alive(rfm); ep = m.expected_purchases(rfm, 52.0)
_report(time.perf_counter() - t0)""",
        "clvmodels Pareto/NBD": """
import clvmodels
m = clvmodels.ParetoNBDModel.from_params(PNBD, time_unit="W")
t0 = time.perf_counter(); pa = m.probability_alive(rfm); ep = m.expected_purchases(rfm, 52.0)
_report(time.perf_counter() - t0)""",
        "lifetimes Pareto/NBD": """
from lifetimes import ParetoNBDFitter
m = ParetoNBDFitter(); m.params_ = pd.Series(PNBD)
t0 = time.perf_counter()
pa = m.conditional_probability_alive(rfm.frequency, rfm.recency, rfm["T"])
ep = m.conditional_expected_number_of_purchases_up_to_time(52.0, rfm.frequency, rfm.recency, rfm["T"])
_report(time.perf_counter() - t0)""",
    },
}


def make_table(n: int) -> str:
    """The RFM table (weeks, as of week 160) of ``n`` generated customers, with its calendar."""
    import numpy as np
    from worlds import _date, simulate_pareto_calendar

    import clvmodels

    DATA.mkdir(exist_ok=True)
    path = DATA / f"seasonal_pareto_{n}.parquet"
    if path.exists():
        return str(path)
    log = simulate_pareto_calendar(
        n, seed=n, acquisition=(0.0, 104.0), span=160.0, beta=40.0,
        purchase=lambda t: 1 + 0.5 * np.sin(2 * np.pi * t / 52.0), purchase_max=1.5,
        dropout=lambda t: np.exp(0.8 * np.cos(2 * np.pi * t / 52.0)), dropout_max=float(np.exp(0.8)))
    rfm = clvmodels.rfm_summary(log, time_unit="W", observation_end=_date(160.0), calendar=True)
    cal = rfm.attrs["purchase_calendar"]
    attrs = {k: v for k, v in rfm.attrs.items() if k != "purchase_calendar"}
    attrs["calendar"] = {"start": str(cal.start), "end": str(cal.end), "counts": [int(c) for c in cal.counts]}
    rfm.attrs = {}
    rfm.to_parquet(path)
    Path(str(path) + ".json").write_text(json.dumps(attrs, default=str))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rows: list[str] = []
    for n in args.sizes:
        prelude = f"PATH = {make_table(n)!r}\nPNBD = {PNBD!r}\n" + LOAD
        for task, contenders in TASKS.items():
            results = {name: run_child(prelude + code, args.repeats) for name, code in contenders.items()}
            ref = results["clvmodels Pareto/NBD"]
            for name, r in results.items():
                rows.append(f"| {n:,} | {task} | {name} | {r['seconds']:.3f} | {r['peak_mb']:,.0f} | "
                            f"{r['seconds'] / ref['seconds']:.1f}x | {r['peak_mb'] / ref['peak_mb']:.2f} |")
                print(rows[-1], flush=True)
    table = "\n".join([
        "### What a calendar costs: seasonal Pareto/NBD (`benchmarks/bench_seasonal.py`)",
        "",
        f"Machine: {machine_line()}; generated Pareto/NBD customers with a season in both processes (160 weeks); "
        f"best of {args.repeats} run(s), each in a fresh process; peak = VmHWM of the process. The seasonal model "
        "fits at most `FIT_CUSTOMERS` (50,000) customers, a random sample beyond that; no Python peer has a "
        "calendar, so the ratios are to clvmodels' own Pareto/NBD on the same table.",
        "",
        "| customers | task | tool | wall s | peak MB | time vs Pareto/NBD | memory vs Pareto/NBD |",
        "|---:|---|---|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("seasonal", table)
    print(table)


if __name__ == "__main__":
    main()
