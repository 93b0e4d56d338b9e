"""MBG/NBD, Pareto/NBD and BG/BB: clvmodels vs lifetimes, side by side in one run.

    .venv/bin/python benchmarks/bench_model_family.py [--sizes 100000 1000000] [--repeats 1] [--tasks "Pareto/NBD fit"]

For each size, the generated RFM table of ``bench_models.py`` (CDNOW-like BG/NBD data, weeks)
is fitted by both libraries' MBG/NBD and Pareto/NBD, each in a fresh process, and scored
(P(alive) + expected purchases over 39 weeks). BG/BB is fitted on a generated log of
discrete opportunities (the donation parameters of Fader, Hardie & Shang 2010, 6
opportunities), one row per customer: lifetimes without and with weights on repeated rows
(grouping included in its time). Writes its table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse

from _harness import DATA, machine_line, run_child, write_section
from bench_models import make_rfm

LOAD = "import pandas as pd\nrfm = pd.read_parquet(PATH)\nrfm.attrs['time_unit'] = 'W'\n"
PNBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}

TASKS = {
    "MBG/NBD fit": {
        "clvmodels": """
import clvmodels
t0 = time.perf_counter(); m = clvmodels.ModifiedBetaGeoModel().fit(rfm); _report(time.perf_counter() - t0, {"ll": m.log_likelihood_})""",
        "lifetimes": """
from lifetimes import ModifiedBetaGeoFitter
t0 = time.perf_counter(); m = ModifiedBetaGeoFitter().fit(rfm.frequency, rfm.recency, rfm["T"]); _report(time.perf_counter() - t0)""",
    },
    "Pareto/NBD fit": {
        "clvmodels": """
import clvmodels
t0 = time.perf_counter(); m = clvmodels.ParetoNBDModel().fit(rfm); _report(time.perf_counter() - t0, {"ll": m.log_likelihood_})""",
        "lifetimes": """
from lifetimes import ParetoNBDFitter
t0 = time.perf_counter(); m = ParetoNBDFitter().fit(rfm.frequency, rfm.recency, rfm["T"]); _report(time.perf_counter() - t0)""",
    },
    "Pareto/NBD score P(alive) + E[purchases]": {
        "clvmodels": """
import clvmodels
m = clvmodels.ParetoNBDModel.from_params(PNBD, time_unit="W")
t0 = time.perf_counter(); pa = m.probability_alive(rfm); ep = m.expected_purchases(rfm, 39.0); _report(time.perf_counter() - t0)""",
        "lifetimes": """
from lifetimes import ParetoNBDFitter
m = ParetoNBDFitter(); m.params_ = pd.Series(PNBD)
t0 = time.perf_counter()
pa = m.conditional_probability_alive(rfm.frequency, rfm.recency, rfm["T"])
ep = m.conditional_expected_number_of_purchases_up_to_time(39.0, rfm.frequency, rfm.recency, rfm["T"])
_report(time.perf_counter() - t0)""",
    },
}

BGBB = {
    "BG/BB fit": {
        "clvmodels": """
from clvmodels.models.beta_geo_beta_binom import BetaGeoBetaBinomModel
t0 = time.perf_counter(); m = BetaGeoBetaBinomModel().fit(d); _report(time.perf_counter() - t0, {"ll": m.log_likelihood_})""",
        "lifetimes": """
from lifetimes import BetaGeoBetaBinomFitter
t0 = time.perf_counter(); m = BetaGeoBetaBinomFitter().fit(d.frequency, d.recency, d.n_periods); _report(time.perf_counter() - t0)""",
        "lifetimes + weights": """
from lifetimes import BetaGeoBetaBinomFitter
t0 = time.perf_counter()
g = d.groupby(["frequency", "recency", "n_periods"]).size().rename("w").reset_index()
m = BetaGeoBetaBinomFitter().fit(g.frequency, g.recency, g.n_periods, weights=g.w)
_report(time.perf_counter() - t0)""",
    },
}


def make_bgbb(n: int, periods: int = 6) -> str:
    """Customers from BG/BB with the donation estimates: each opportunity, an active customer
    transacts with probability p, then may become inactive with probability theta."""
    import numpy as np
    import pandas as pd

    DATA.mkdir(exist_ok=True)
    path = DATA / f"bgbb_{n}.parquet"
    if path.exists():
        return str(path)
    rng = np.random.default_rng(n)
    p = rng.beta(1.204, 0.750, n)
    theta = rng.beta(0.657, 2.783, n)
    alive = np.ones(n, bool)
    freq = np.zeros(n, int)
    rec = np.zeros(n, int)
    for t in range(1, periods + 1):
        alive &= rng.random(n) >= theta
        buy = alive & (rng.random(n) < p)
        freq += buy
        rec = np.where(buy, t, rec)
    pd.DataFrame({"frequency": freq, "recency": rec, "n_periods": periods}).to_parquet(path)
    return str(path)


def _rows(n: int, task: str, results: dict) -> list[str]:
    ref = results.get("lifetimes")
    out = []
    for name, r in results.items():
        speed = f"{ref['seconds'] / r['seconds']:.1f}x" if ref else "n/a"
        mem = f"{r['peak_mb'] / ref['peak_mb']:.2f}" if ref else "n/a"
        out.append(f"| {n:,} | {task} | {name} | {r['seconds']:.3f} | {r['peak_mb']:,.0f} | {speed} | {mem} |")
        print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", choices=[*TASKS, *BGBB],
                        help="only these rows, printed (the README's table is left as it is)")
    args = parser.parse_args()
    wanted = set(args.tasks or [*TASKS, *BGBB])
    rows: list[str] = []
    for n in args.sizes:
        prelude = f"PATH = {make_rfm(n)!r}\nPNBD = {PNBD!r}\n" + LOAD
        for task, contenders in TASKS.items():
            if task in wanted:
                rows += _rows(n, task, {name: run_child(prelude + code, args.repeats)
                                        for name, code in contenders.items()})
        if not wanted & set(BGBB):
            continue
        prelude = f"import pandas as pd\nd = pd.read_parquet({make_bgbb(n)!r})\n"
        for task, contenders in BGBB.items():
            if task in wanted:
                rows += _rows(n, task, {name: run_child(prelude + code, args.repeats)
                                        for name, code in contenders.items()})
    if args.tasks:
        return
    table = "\n".join([
        "### MBG/NBD, Pareto/NBD, BG/BB (`benchmarks/bench_model_family.py`)",
        "",
        f"Machine: {machine_line()}; generated customers (MBG/NBD, Pareto/NBD: the CDNOW-like tables of "
        "bench_models.py; BG/BB: donation parameters, 6 opportunities); best of "
        f"{args.repeats} run(s), each in a fresh process; peak = VmHWM of the process.",
        "",
        "| customers | task | tool | wall s | peak MB | speed-up vs lifetimes | memory vs lifetimes |",
        "|---:|---|---|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("model_family", table)
    print(table)


if __name__ == "__main__":
    main()
