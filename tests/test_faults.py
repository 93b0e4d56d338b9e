"""Issue 9: bad data, degenerate fits, damaged model files, and report runs that are
interrupted, collide or run out of disk - each ends in a clear error, never in a lost or
half-written report."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels import BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel, ParetoNBDModel
from clvmodels.cli import parse_parameter
from clvmodels.exceptions import (
    ConvergenceError,
    DataValidationError,
    ModelError,
    ModelFileError,
    ParameterError,
    ReportError,
)
from clvmodels.reporting import clean_stale_runs, run_report, template_path, validate_parameters

from .conftest import assert_interrupted, interrupt_report

ROOT = Path(__file__).resolve().parents[1]
PURCHASE_MODELS = (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel)


def _rfm(freq, rec, T, m=None):
    n = len(freq)
    out = pd.DataFrame({"frequency": freq, "recency": np.asarray(rec, float), "T": np.asarray(T, float),
                        "monetary_value": np.zeros(n) if m is None else m})
    out.attrs["time_unit"] = "W"
    return out


@pytest.mark.parametrize("cls", PURCHASE_MODELS)
def test_no_repeat_buyers_or_all_on_one_day_refused(cls):
    with pytest.raises(DataValidationError, match="No customer made a repeat purchase"):
        cls().fit(_rfm([0] * 40, [0] * 40, np.linspace(1, 30, 40)))
    with pytest.raises(DataValidationError, match="first purchase on the last day"):
        cls().fit(_rfm([0] * 40, [0] * 40, [0] * 40))


@pytest.mark.parametrize("cls", PURCHASE_MODELS)
def test_identical_customers_fit_as_a_stated_limit(cls):
    """Identical histories show no heterogeneity: the fit runs to the limiting model (issue 14:
    a legitimate model, evaluated as that limit), says so in words, and forecasts no NaN."""
    rfm = _rfm([2] * 50, [5.0] * 50, [10.0] * 50, m=np.full(50, 20.0))
    model = cls().fit(rfm)
    assert any("barely differ between customers" in t for t in model.fit_info_["limits"])
    assert model.fit_info_["at_limit"]
    spend = GammaGammaModel.from_params({"p": 6.25, "q": 3.74, "v": 15.44})
    fc = clvmodels.forecast(model, spend, rfm, horizon=26)
    assert np.isfinite(fc.to_numpy()).all()


def test_refit_failure_forgets_the_earlier_fit(sample_cal):
    m = BetaGeoModel().fit(sample_cal)
    with pytest.raises(DataValidationError):
        m.fit(_rfm([0] * 5, [0] * 5, [1, 2, 3, 4, 5]))
    with pytest.raises(clvmodels.NotFittedError):
        m.probability_alive(sample_cal)


def test_failed_gamma_gamma_keeps_no_parameters():
    """q <= 1 (heavy-tailed spend): the fit raises and leaves nothing to forecast with."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 5, 400)
    m = np.exp(rng.standard_cauchy(400).clip(-30, 30) * 3)  # absurdly heavy tail
    gg = GammaGammaModel()
    with pytest.raises((ModelError, ConvergenceError)):
        gg.fit(pd.DataFrame({"frequency": x, "monetary_value": m}))
    assert not hasattr(gg, "params_")
    with pytest.raises(clvmodels.NotFittedError):
        gg.mean_spend  # noqa: B018


def test_a_equal_one_is_finite(sample_cal):
    m = BetaGeoModel.from_params({"r": 0.5, "alpha": 5.0, "a": 1.0, "b": 2.0}, time_unit="W")
    near = BetaGeoModel.from_params({"r": 0.5, "alpha": 5.0, "a": 1.0 + 1e-5, "b": 2.0}, time_unit="W")
    gg = GammaGammaModel.from_params({"p": 6.0, "q": 4.0, "v": 15.0})
    fc = clvmodels.forecast(m, gg, sample_cal, horizon=52)
    assert np.isfinite(fc.to_numpy()).all()
    np.testing.assert_allclose(fc["expected_purchases"],
                               clvmodels.forecast(near, gg, sample_cal, horizon=52)["expected_purchases"], rtol=1e-4)


def test_nan_covariance_model_loads(tmp_path, sample_cal):
    m = BetaGeoModel().fit(sample_cal)
    m.covariance_log_ = np.full((4, 4), np.nan)  # what a singular information matrix leaves
    back = BetaGeoModel.load(m.save(tmp_path / "m.json"))
    assert back.covariance_log_ is None
    np.testing.assert_allclose(back.probability_alive(sample_cal), m.probability_alive(sample_cal))


@pytest.mark.parametrize("content", [
    '{"format": "clvmodels.model", "format_version": 1, "model": "BetaGeoModel"}',                  # KeyError
    '{"format": "clvmodels.model", "format_version": 1, "model": "BetaGeoModel", "params": 5}',     # TypeError
    '{"format": "clvmodels.model", "format_version": 1, "model": "BetaGeoModel", '
    '"params": {"r": "x", "alpha": 1, "a": 1, "b": 1}}',
    '{"format": "clvmodels.model", "format_version": 1, "model": "BetaGeoModel", '
    '"params": {"r": 1, "alpha": 1, "a": 1, "b": 1}, "init_params": {"evil": 1}}',
    '{"format": "clvmodels.model", "format_version": 1, "model": "BetaGeoModel", '
    '"params": {"r": 1, "alpha": 1, "a": 1, "b": 1}, "covariance_log": [[1, 2]]}',
    "[" * 100_000 + "]" * 100_000,                                                                   # RecursionError
    "\x00\xff garbage",
])
def test_crafted_model_files_raise_model_file_error(tmp_path, content):
    path = tmp_path / "m.json"
    path.write_text(content, errors="surrogateescape") if "\xff" not in content else path.write_bytes(b"\x00\xff garbage")
    with pytest.raises(ModelFileError):
        BetaGeoModel.load(path)
    with pytest.raises(ModelFileError):
        clvmodels.models.load_model(path)


def test_ambiguous_text_dates_are_never_guessed(tmp_path):
    """01/02/2024 is 1 February or 2 January; DuckDB's sniffer guessed per file."""
    day_first = tmp_path / "a.csv"
    day_first.write_text("customer_id,date,amount\n1,01/02/2024,3\n1,13/02/2024,4\n")
    month_first = tmp_path / "b.csv"
    month_first.write_text("customer_id,date,amount\n1,01/02/2024,3\n1,02/13/2024,4\n")
    for f in (day_first, month_first):
        with pytest.raises(DataValidationError, match=r"Column 'date'.*do not parse.*'%d/%m/%Y' for day first"):
            clvmodels.load_transactions(f)
    a = clvmodels.rfm_summary(clvmodels.load_transactions(day_first, date_format="%d/%m/%Y"))
    b = clvmodels.rfm_summary(clvmodels.load_transactions(month_first, date_format="%m/%d/%Y"))
    # ids read from CSV are text exactly as written
    assert a.loc["1", "recency"] == 12.0 and b.loc["1", "recency"] == 42.0


def test_text_nan_amounts_are_missing(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("customer_id,date,amount\n1,2024-01-02,12.5\n1,2024-02-13,nan\n2,2024-01-05,NaN\n")
    with pytest.raises(DataValidationError, match=r"Column 'amount': 2 of 3 rows have no amount"):
        clvmodels.load_transactions(f)
    df = pd.DataFrame({"customer_id": [1, 2], "date": ["2024-01-01", "2024-01-02"], "amount": ["3", "nan"]})
    with pytest.raises(DataValidationError, match="Column 'amount'"):
        clvmodels.load_transactions(df)


def test_horizon_is_capped(sample_cal):
    bg = BetaGeoModel.from_params(clvmodels.datasets.CDNOW_PURCHASE_PARAMS, time_unit="W")
    gg = GammaGammaModel.from_params({"p": 6.0, "q": 4.0, "v": 15.0})
    with pytest.raises(ParameterError, match=r"horizon must be at most 521 weeks \(ten years\), got 1e\+06"):
        clvmodels.forecast(bg, gg, sample_cal, horizon=1e6)
    with pytest.raises(ParameterError, match="horizon must be at most 3653 days"):
        validate_parameters({"horizon": 5000, "time_unit": "D"})


def test_cli_values_parsed_by_declared_type():
    assert parse_parameter("calibration_end", "2017-07-01", "") == "2017-07-01"
    assert parse_parameter("title", "Q3: review", "x") == "Q3: review"
    assert parse_parameter("horizon", "1e3", 52) == 1000 and isinstance(parse_parameter("horizon", "26", 52), int)
    assert parse_parameter("margin", "0.25", 0.3) == 0.25
    assert parse_parameter("tier_shares", "{Platinum: 0.1, Gold: 0.2, Iron: 0.4, Lead: 0.3}", {"a": 1})["Gold"] == 0.2
    with pytest.raises(ParameterError, match=r"Parameter 'horizon' is a number, got 'soon'"):
        parse_parameter("horizon", "soon", 52)
    with pytest.raises(ParameterError, match="'tier_shares' must be a dict"):
        parse_parameter("tier_shares", "0.5", {"a": 1})


def test_named_templates_ignore_the_current_folder(tmp_path, monkeypatch):
    """A notebooks/clv_report.ipynb in the working folder does not replace the installed one."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "clv_report.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    path = template_path("clv_report")
    assert path.parent.name == "templates" and "clvmodels" in str(path)
    assert path.read_text() != "{}"


def test_stale_run_folders_are_cleaned(tmp_path):
    """Issue 15: only folders this project made and whose run provably ended are removed: not a
    user's hidden .tmp folder (whatever its age), not another host's or pid namespace's live
    run, not a reused pid, never through a symbolic link."""
    import json
    import socket

    from clvmodels import reporting

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker = reporting.OWNER_FILE

    def run_folder(name: str, **record) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        base = json.loads(reporting.owner_record())
        (folder / marker).write_text(json.dumps({**base, **record}))
        return folder

    stale = run_folder(".old-run.abc.tmp", pid=dead.pid, start="")
    live = run_folder(".live-run.def.tmp")
    other_host = run_folder(".other-host.ghi.tmp", pid=dead.pid, host=socket.gethostname() + "-other")
    other_ns = run_folder(".other-ns.jkl.tmp", pid=dead.pid, pid_namespace="pid:[1]")
    reused = run_folder(".reused.mno.tmp", pid=os.getpid(), start="1")  # our pid, another start time
    notes = tmp_path / ".my-notes.tmp"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    old = time.time() - 3 * 86_400
    os.utime(notes, (old, old))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / marker).write_text(json.dumps({**json.loads(reporting.owner_record()), "pid": dead.pid}))
    (tmp_path / ".link.pqr.tmp").symlink_to(outside, target_is_directory=True)
    removed = clean_stale_runs(tmp_path)
    assert sorted(removed) == sorted([stale, reused])
    assert live.exists() and other_host.exists() and other_ns.exists() and notes.exists() and outside.exists()
    assert (outside / marker).exists()


def test_failure_handler_survives_a_full_disk(tmp_path, monkeypatch):
    """HTML export hits ENOSPC and so does writing FAILED.txt: still a ReportError, no
    traceback from the handler, nothing published, no hidden folder left."""
    import errno

    from clvmodels import reporting

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(reporting.runner, "_export_html", full)
    real_write = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == "FAILED.txt":
            full()
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(ReportError, match="No space left on device"):
        run_report("clv_report", {"n_draws": 10, "calibration_end": "none"}, tmp_path, progress=False)
    names = [p.name for p in tmp_path.iterdir()]
    assert not [n for n in names if n.endswith(".tmp")]
    assert all(n.endswith("-FAILED") for n in names)


def _report_cmd(out: Path, title: str) -> list[str]:
    return [sys.executable, "-m", "clvmodels.cli", "report", "--output", str(out), "--no-progress",
            "-p", "title", title, "-p", "n_draws", "10", "-p", "calibration_end", "none"]


def test_two_runs_with_one_title_both_publish(tmp_path):
    procs = [subprocess.Popen(_report_cmd(tmp_path, "Same title"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    folders = sorted(p for p in tmp_path.iterdir())
    assert len(folders) == 2 and all((f / "report.html").is_file() for f in folders)
    assert not list(tmp_path.glob(".*"))
    # readable by others as any new folder would be (mkdtemp makes 0700)
    umask = os.umask(0)
    os.umask(umask)
    for f in folders:
        assert stat.S_IMODE(f.stat().st_mode) == 0o777 & ~umask


def test_ctrl_c_gives_a_short_message_and_no_hidden_folder(tmp_path):
    """SIGINT while the kernel runs the notebook (its report.ipynb is being written in the hidden
    folder): one short line, exit 1 or 130, nothing left behind. A run can still finish between
    the check and the signal on a quiet machine; then it is tried again, at most three times."""
    for attempt in range(3):
        out = tmp_path / f"try{attempt}"
        out.mkdir()
        code, err = interrupt_report(_report_cmd(out, "Interrupted")[:-3], out, ROOT, 0.5)
        if code != 0:
            break
    assert_interrupted(code, err, out)


def test_cli_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, monkeypatch):
    """Issue 15: an output under a file, a broken link, a read-only or full disk: one line naming
    --output, the path, what is wrong and what to do - said before the log is read."""
    import errno
    import tempfile

    from clvmodels.cli import check_output_folder

    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    for command in (["report", "--dataset", "cdnow-sample"], ["score", "--input", "nosuch.csv", "--model", "bgnbd"]):
        proc = subprocess.run([sys.executable, "-m", "clvmodels.cli", *command,
                               "--output", str(blocker / "sub"), "--no-progress"][: None if command[0] == "report" else -1],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert (f"--output {str(blocker / 'sub')!r} cannot be an output folder: {str(blocker)!r} is a file, "
                "not a folder") in proc.stderr
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ParameterError, match=r"--output '.*dangling' cannot be an output folder \(it is a broken link\)"):
        check_output_folder(tmp_path / "dangling", "--output")
    check_output_folder(tmp_path / "new" / "deeper", "--output")  # a new folder under a writable one is fine
    assert not list(tmp_path.glob(".clvmodels-write-check-*"))
    for code, words in ((errno.EROFS, "the file system is read-only"), (errno.ENOSPC, "the disk is full"),
                        (errno.EACCES, "permission denied")):
        def refuse(*args, _code=code, **kwargs):
            raise OSError(_code, os.strerror(_code))

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
        with pytest.raises(ParameterError, match=rf"--output '.*reports' cannot be written \('.*': {words}"):
            check_output_folder(tmp_path / "reports", "--output")
        monkeypatch.undo()


def test_cli_file_system_errors_during_a_run_are_one_line_with_a_log(tmp_path, monkeypatch, capsys):
    """An OSError the pre-checks could not see (the disk fills during the run) is one line naming the
    file and the cause; the traceback goes to a log file whose path the line gives."""
    import errno

    from clvmodels import cli

    def fill():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))

    assert cli._guarded(fill, "no report was published", tmp_path) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("clvmodels: error: No space left on device (") and "- the disk is full" in line
    assert "no report was published" in line
    log = Path(line.rsplit("Full traceback: ", 1)[1])
    assert "Traceback" in log.read_text()


def test_dangling_symlink_at_the_report_name_is_skipped(tmp_path, monkeypatch):
    """Issue 15: a dangling symbolic link where the report would land is a taken name: the report
    publishes under the next name, nothing is left hidden."""
    import datetime as dt

    from clvmodels import reporting

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 12, 1, 12, 0, 0)

    monkeypatch.setattr(reporting.runner._dt, "datetime", Frozen)
    name = "customer-lifetime-value-report-20261201-120000"
    (tmp_path / name).symlink_to(tmp_path / "nowhere")
    folder = run_report("clv_report", {"n_draws": 10, "calibration_end": "none"}, tmp_path, progress=False)
    assert folder.name == f"{name}-2" and (folder / "report.html").is_file()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("cls", [*PURCHASE_MODELS, GammaGammaModel])
def test_weights_summing_past_the_float_range_are_refused(cls):
    """Issue 15: finite weights whose sum overflows are refused at once (Pareto/NBD hung for
    minutes), the same for every model."""
    rfm = _rfm([1, 2, 0], [1.0, 2.0, 0.0], [5.0, 5.0, 5.0], m=np.array([10.0, 12.0, 0.0]))
    with pytest.raises(DataValidationError, match="weights add up to more than"):
        cls().fit(rfm, weights=[1e308, 1e308, 1e308])
