"""One thread budget for a run (issue 30, item 1): DuckDB, BLAS and OpenMP limited together."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from clvmodels import threads
from clvmodels.engine import duckdb_connection
from clvmodels.exceptions import ParameterError


def _duckdb_threads() -> int:
    return int(duckdb_connection().raw_sql("SELECT current_setting('threads')").fetchone()[0])


def test_an_explicit_budget_is_kept_within_the_cores():
    cores = threads.available_cores()
    assert threads.thread_budget(1) == 1
    assert threads.thread_budget(10_000) == cores
    assert 1 <= threads.thread_budget(0) <= cores
    with pytest.raises(ParameterError, match="threads"):
        threads.thread_budget(-1)


def test_the_budget_sees_other_work(monkeypatch):
    """Busy cores (the load average, or runnable threads now when the average lags) are not used."""
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # this process alone
    monkeypatch.setattr(threads, "_running_now", lambda: 1.0)
    assert threads.thread_budget() == 8
    monkeypatch.setattr(threads, "_running_now", lambda: 6.0)  # five others just started
    assert threads.thread_budget() == 3
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (20.0, 20.0, 20.0))
    assert threads.thread_budget() == 1


def test_inside_the_block_every_pool_keeps_the_budget():
    before = _duckdb_threads()
    with threads.limited_threads(1) as n:
        assert n == 1
        assert _duckdb_threads() == 1
        from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: F401 - loads scikit-learn's OpenMP
        with threads.within_budget():
            pools = threadpool_info()
            assert pools and all(p["num_threads"] == 1 for p in pools)
    assert _duckdb_threads() == before


def test_a_report_records_its_budget(tmp_path):
    import clvmodels
    from clvmodels import pipeline, reporting

    log = clvmodels.load_cdnow("sample")
    cfg = reporting.validate_parameters({"threads": 1, "n_draws": 20, "observation_end": "1997-12-31"})
    an = pipeline.run_analysis(cfg, log[log["date"] <= "1997-12-31"])
    assert an.details["threads"] == 1
    with pytest.raises(ParameterError, match="threads"):
        reporting.validate_parameters({"threads": -2})
