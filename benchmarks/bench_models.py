"""Fit and score BG/NBD and Gamma-Gamma: clvmodels vs lifetimes, side by side in one run.

    .venv/bin/python benchmarks/bench_models.py [--sizes 10000 100000 1000000] [--repeats 3]

For each size, one generated RFM table (CDNOW-like parameters, weeks) is written to Parquet;
every contender loads it in a fresh process and times only the work named in the row. Rows:

* BG/NBD fit: clvmodels.BetaGeoModel().fit vs lifetimes BetaGeoFitter.fit, plain and with
  weights on duplicate rows (the grouping time is included);
* Gamma-Gamma fit on the repeat buyers;
* scoring P(alive) + expected purchases over 39 weeks for every customer (clvmodels also
  scores the churn probability by the horizon's end, which lifetimes lacks, in a separate row);
* the whole per-customer forecast table over 12 months (52.14 weeks, monthly discount 1%
  = 12.68% a year): clvmodels.forecast (P(alive), churn now and by the horizon, expected
  purchases, P(any purchase), spend, revenue, discounted CLV, weekly discounting) vs
  lifetimes' customer_lifetime_value (monthly steps) with its P(alive) and expected purchases.

Writes its table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse

from _harness import DATA, machine_line, run_child, write_section

LOAD = "import pandas as pd\nrfm = pd.read_parquet(PATH)\nrfm.attrs['time_unit'] = 'W'\n"

TASKS = {
    "BG/NBD fit": {
        "clvmodels": """
import clvmodels
t0 = time.perf_counter(); m = clvmodels.BetaGeoModel().fit(rfm); dt = time.perf_counter() - t0
_report(dt, {"ll": m.log_likelihood_})""",
        "lifetimes": """
from lifetimes import BetaGeoFitter
t0 = time.perf_counter(); m = BetaGeoFitter().fit(rfm.frequency, rfm.recency, rfm["T"]); dt = time.perf_counter() - t0
_report(dt)""",
        "lifetimes + weights": """
from lifetimes import BetaGeoFitter
t0 = time.perf_counter()
g = rfm.groupby(["frequency", "recency", "T"]).size().rename("w").reset_index()
m = BetaGeoFitter().fit(g.frequency, g.recency, g["T"], weights=g.w)
_report(time.perf_counter() - t0)""",
    },
    "Gamma-Gamma fit": {
        "clvmodels": """
import clvmodels
t0 = time.perf_counter(); m = clvmodels.GammaGammaModel().fit(rfm); _report(time.perf_counter() - t0)""",
        "lifetimes": """
from lifetimes import GammaGammaFitter
t0 = time.perf_counter()
b = rfm[(rfm.frequency > 0) & (rfm.monetary_value > 0)]
m = GammaGammaFitter().fit(b.frequency, b.monetary_value)
_report(time.perf_counter() - t0)""",
    },
    "score P(alive) + E[purchases]": {
        "clvmodels": """
import clvmodels
m = clvmodels.BetaGeoModel.from_params(PARAMS, time_unit="W")
t0 = time.perf_counter()
pa = m.probability_alive(rfm); ep = m.expected_purchases(rfm, 39.0)
_report(time.perf_counter() - t0)""",
        "lifetimes": """
from lifetimes import BetaGeoFitter
m = BetaGeoFitter(); m.params_ = pd.Series(PARAMS)
t0 = time.perf_counter()
pa = m.conditional_probability_alive(rfm.frequency, rfm.recency, rfm["T"])
ep = m.conditional_expected_number_of_purchases_up_to_time(39.0, rfm.frequency, rfm.recency, rfm["T"])
_report(time.perf_counter() - t0)""",
    },
    "forecast table, 52 weeks": {
        "clvmodels": """
import clvmodels
m = clvmodels.BetaGeoModel.from_params(PARAMS, time_unit="W")
g = clvmodels.GammaGammaModel.from_params(SPEND)
t0 = time.perf_counter()
fc = clvmodels.forecast(m, g, rfm, horizon=12 * 4.345, discount_rate=0.1268, margin=1.0)
_report(time.perf_counter() - t0)""",
        "lifetimes": """
from lifetimes import BetaGeoFitter, GammaGammaFitter
m = BetaGeoFitter(); m.params_ = pd.Series(PARAMS); m.predict = m.conditional_expected_number_of_purchases_up_to_time
g = GammaGammaFitter(); g.params_ = pd.Series(SPEND)
t0 = time.perf_counter()
pa = m.conditional_probability_alive(rfm.frequency, rfm.recency, rfm["T"])
ep = m.conditional_expected_number_of_purchases_up_to_time(12 * 4.345, rfm.frequency, rfm.recency, rfm["T"])
clv = g.customer_lifetime_value(m, rfm.frequency, rfm.recency, rfm["T"], rfm.monetary_value, time=12,
                                discount_rate=0.01, freq="W")
_report(time.perf_counter() - t0)""",
    },
    "score churn by horizon end": {
        "clvmodels": """
import clvmodels
m = clvmodels.BetaGeoModel.from_params(PARAMS, time_unit="W")
t0 = time.perf_counter(); s = m.probability_alive_after(rfm, 39.0); _report(time.perf_counter() - t0)""",
    },
}

PARAMS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}


def make_rfm(n: int) -> str:
    import clvmodels
    from clvmodels.datasets import simulate_transactions

    DATA.mkdir(exist_ok=True)
    path = DATA / f"rfm_{n}.parquet"
    if not path.exists():
        sim = simulate_transactions(n, seed=n, period=78.0, acquisition_period=12.0)
        rfm = clvmodels.rfm_summary(sim.transactions, time_unit="W", observation_end=sim.truth.attrs["observation_end"])
        rfm.to_parquet(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        path = make_rfm(n)
        prelude = f"PATH = {path!r}\nPARAMS = {PARAMS!r}\nSPEND = {SPEND!r}\n" + LOAD
        for task, contenders in TASKS.items():
            results = {name: run_child(prelude + code, args.repeats) for name, code in contenders.items()}
            ref = results.get("lifetimes")
            for name, r in results.items():
                speed = f"{ref['seconds'] / r['seconds']:.1f}x" if ref else "n/a"
                mem = f"{r['peak_mb'] / ref['peak_mb']:.2f}" if ref else "n/a"
                rows.append(f"| {n:,} | {task} | {name} | {r['seconds']:.3f} | {r['peak_mb']:,.0f} | {speed} | {mem} |")
                print(rows[-1], flush=True)
    table = "\n".join([
        "### Model fitting and scoring (`benchmarks/bench_models.py`)",
        "",
        f"Machine: {machine_line()}; generated customers (CDNOW-like parameters, 78 weeks); best of "
        f"{args.repeats} runs, each in a fresh process; peak = the memory high-water mark (VmHWM) of the process (includes "
        "reading the RFM table).",
        "",
        "| customers | task | tool | wall s | peak MB | speed-up vs lifetimes | memory vs lifetimes |",
        "|---:|---|---|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("models", table)
    print(table)


if __name__ == "__main__":
    main()
