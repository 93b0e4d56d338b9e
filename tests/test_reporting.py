from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

import clvmodels
from clvmodels import reporting
from clvmodels.exceptions import ParameterError, ReportError
from clvmodels.reporting import ReportConfig, run_report, validate_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    folder = run_report(ROOT / "notebooks" / "clv_report.ipynb",
                        {"n_draws": 20, "title": "Test run", "horizon": 26}, out, progress=False)
    return out, folder


def test_report_folder_contents(finished):
    out, folder = finished
    assert folder.parent == out and folder.name.startswith("test-run-")
    for name in ("report.html", "report.ipynb", "forecast.parquet", "forecast.csv", "tier_table.csv",
                 "purchase_model.json", "gamma_gamma.json", "parameters.json", "at_risk_customers.csv",
                 "model_selection.csv", "cash_flow.csv"):
        assert (folder / name).is_file(), name
    fc = pd.read_parquet(folder / "forecast.parquet")
    assert len(fc) == 2357 and {"clv", "p_alive", "tier", "clv_lower", "clv_upper"} <= set(fc.columns)
    assert (fc["clv_lower"] <= fc["clv_upper"]).all()
    tiers = pd.read_csv(folder / "tier_table.csv", index_col=0)
    assert tiers.index.tolist() == ["Platinum", "Gold", "Iron", "Lead", "Total"]
    params = json.loads((folder / "parameters.json").read_text())
    assert params["horizon"] == 26 and params["title"] == "Test run"
    from clvmodels.models import load_model

    model = load_model(folder / "purchase_model.json")
    selection = pd.read_csv(folder / "model_selection.csv", index_col=0)
    assert type(model).__name__ == {"BG/NBD": "BetaGeoModel", "MBG/NBD": "ModifiedBetaGeoModel",
                                    "Pareto/NBD": "ParetoNBDModel"}[selection.index[selection["chosen"]][0]]
    assert model.time_unit_ == "W"
    risk = pd.read_csv(folder / "at_risk_customers.csv", index_col=0)
    assert set(risk["tier"]) <= {"Platinum", "Gold"} and risk["risk_against_tier"].is_monotonic_decreasing
    assert not list(out.glob(".*.tmp")), "temporary folder left behind"


def test_html_is_self_contained_and_has_no_code(finished):
    html = (finished[1] / "report.html").read_text()
    assert "Platinum" in html and "Share of value" in html and "Lead" in html   # the tier table
    assert "next 26 weeks" in html and "discounted at 10% a year" in html     # the parameters
    assert "Spend per purchase rises weakly with how often customers buy" in html  # Gamma-Gamma's assumption, checked
    assert "bundled cdnow-sample data" in html
    assert "<img" in html and "data:image/png;base64" in html                 # figures embedded
    assert not re.search(r"https?://", html), "the report must not reference external URLs"
    for code in ("import clvmodels", "validate_parameters", "cfg.", "jp-InputArea", "In&nbsp;["):
        assert code not in html, code


def test_failing_cell_keeps_earlier_run_and_leaves_nothing_finished(finished, tmp_path):
    out, earlier = finished
    before = set(p.name for p in out.iterdir())
    bad = tmp_path / "log.csv"
    # a problem past the rows the command checks before the kernel starts: the notebook fails
    rows = [f"{i % 300},2024-01-{1 + i % 28:02d},3" for i in range(reporting.config.PREFLIGHT_ROWS + 5)]
    bad.write_text("customer_id,date,amount\n" + "\n".join(rows) + "\n1,31/12/2024,3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "clvmodels.cli", "report", "--input", str(bad), "--output", str(out),
         "-p", "title", "Test run", "-p", "calibration_end", "", "-p", "observation_end", "", "--no-progress"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "DataValidationError" in proc.stderr and "dates that do not parse" in proc.stderr
    after = set(p.name for p in out.iterdir())
    new = after - before
    assert len(new) == 1 and next(iter(new)).endswith("-FAILED")
    failed = out / next(iter(new))
    assert (failed / "report.ipynb").is_file() and (failed / "FAILED.txt").is_file()
    assert not (failed / "report.html").exists()
    assert earlier.name in after and (earlier / "report.html").is_file()


def test_bad_parameters_fail_before_any_work(tmp_path):
    with pytest.raises(ParameterError, match=r"Parameter horizon must be > 0.0, got -5"):
        run_report("clv_report", {"horizon": -5}, tmp_path, progress=False)
    with pytest.raises(ParameterError, match=r"Unknown parameter\(s\) \['horizn'\]"):
        run_report("clv_report", {"horizn": 5}, tmp_path, progress=False)
    with pytest.raises(ParameterError, match="Parameter 'time_unit'"):
        run_report("clv_report", {"time_unit": "M"}, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    proc = subprocess.run([sys.executable, "-m", "clvmodels.cli", "report", "-p", "margin", "2",
                           "--output", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "margin must be > 0.0 and <= 1.0, got 2" in proc.stderr


def test_validate_parameters_defaults_and_errors():
    cfg = validate_parameters({})
    assert isinstance(cfg, ReportConfig) and cfg.tier_shares["Platinum"] == 0.05
    with pytest.raises(ParameterError, match="calibration_end"):
        validate_parameters({"calibration_end": "1999-01-01", "observation_end": "1998-06-30"})
    with pytest.raises(ParameterError, match="input_path"):
        validate_parameters({"input_path": "/no/such/file.csv"})


def test_report_error_type_for_missing_template(tmp_path):
    with pytest.raises((ParameterError, ReportError)):
        run_report(tmp_path / "missing.ipynb", {}, tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_templates_are_committed_clean(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["language_info"]["name"] == "python"
    references = json.loads((ROOT / "notebooks" / "expected_outputs.json").read_text())
    stored = {r["source"] for r in references.get(path.name, [])}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            assert cell.source in stored, "a checked cell needs a reference (scripts/notebook_references.py refresh)"
        assert "def " not in cell.source, "notebooks call the package; they define no functions"


@pytest.mark.parametrize("name", ["clv_report.ipynb", "model_validation.ipynb"])
def test_papermill_sees_every_parameter(name):
    path = ROOT / "notebooks" / name
    nb = nbformat.read(str(path), as_version=4)
    first = nb.cells[0]
    assert "parameters" in first.metadata.get("tags", [])
    declared = [ln.split("=")[0].strip() for ln in first.source.splitlines() if "=" in ln and not ln.startswith("#")]
    assert sorted(pm.inspect_notebook(str(path))) == sorted(declared)
    assert set(declared) <= set(ReportConfig.__dataclass_fields__)


def test_report_states_model_choice_and_backtest(finished):
    html = (finished[1] / "report.html").read_text()
    assert "was chosen by backtest on" in html and "tier cells" in html and "Rule:" in html
    assert "How far the last backtest missed" in html and "against what customers then did over" in html
    assert "Assumptions behind every value" in html and "default - set it to your own" in html
    assert 'name="viewport"' in html and 'class="pyramid"' in html
    assert "How to read this." in html and "Normalised Gini" in html and "Decile" in html
    assert "Valuable customers at risk" in html
    assert "¶" not in html  # no anchor pilcrows on headings
    assert ">tier<" not in html and "std_error" not in html  # no raw index names or snake_case headers


def test_user_text_cannot_inject_html(tmp_path):
    """Stored XSS: the title and the input file's name reach the page as text, not markup."""
    from clvmodels.reporting import md_escape, report_heading

    evil = "<script>alert(1)</script> [click](javascript:alert(2)) <img src=x onerror=alert(3)>"
    assert "<script" not in md_escape(evil) and "](javascript" not in md_escape(evil)
    cfg = validate_parameters({"title": evil})
    assert "<script" not in report_heading(cfg)
    log = tmp_path / "<img src=x onerror=alert(4)>.csv"
    clvmodels.load_cdnow("sample").to_csv(log, index=False)
    folder = run_report("clv_report", {"title": evil, "input_path": str(log), "n_draws": 10},
                        tmp_path / "out", progress=False)
    html = (folder / "report.html").read_text()
    # the page's own inline script (sortable tables) is the one script allowed, exactly as written
    from clvmodels.reporting.runner import _SCRIPT

    assert html.count("<script") == 1
    html = html.replace(f"<script>{_SCRIPT}</script>", "")
    # as markup: a script tag, an element carrying an event handler, a javascript: link
    for bad in (r"<script", r"<img[^>]*onerror", r"href=[\"']?javascript:"):
        assert not re.search(bad, html, re.I), bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text


def test_large_forecast_is_partitioned_and_csv_optional(tmp_path, monkeypatch, sample_rfm):
    from clvmodels import reporting

    bg, gg = clvmodels.BetaGeoModel().fit(sample_rfm), clvmodels.GammaGammaModel().fit(sample_rfm)
    fc = clvmodels.forecast(bg, gg, sample_rfm, horizon=52)
    tiers = clvmodels.assign_tiers(fc)
    table = clvmodels.tier_summary(fc, tiers)
    monkeypatch.setattr(reporting.files, "LARGE_FORECAST", 1000)  # the sample's 2,357 customers count as large
    written = reporting.save_artifacts(tmp_path / "a", forecast=fc, tiers=tiers, tier_table=table,
                                       models={"m": bg}, config=validate_parameters({}))
    assert (tmp_path / "a" / "forecast.parquet").is_dir() and not (tmp_path / "a" / "forecast.csv").exists()
    assert sorted(p.name for p in (tmp_path / "a" / "forecast.parquet").iterdir()) == [
        "tier=Gold", "tier=Iron", "tier=Lead", "tier=Platinum"]
    back = pd.read_parquet(tmp_path / "a" / "forecast.parquet")
    assert len(back) == len(fc) and set(back["tier"].astype(str)) == {"Platinum", "Gold", "Iron", "Lead"}
    assert tmp_path / "a" / "forecast.parquet" in written
    reporting.save_artifacts(tmp_path / "b", forecast=fc, tiers=tiers, tier_table=table, models={},
                             config=validate_parameters({"forecast_csv": "yes"}))
    assert (tmp_path / "b" / "forecast.csv").is_file()
    with pytest.raises(ParameterError, match="forecast_csv"):
        validate_parameters({"forecast_csv": "maybe"})


def test_template_defaults_are_the_config_defaults():
    """Parameters are defined once: the template's first cell declares exactly ReportConfig's
    fields, with the same defaults."""
    from dataclasses import fields

    declared = clvmodels.reporting.template_parameters("clv_report")
    config = {f.name: f.default if f.default_factory is dataclass_missing() else f.default_factory()
              for f in fields(ReportConfig)}
    assert set(declared) == set(config)
    for name, value in declared.items():
        if name == "tier_shares":
            assert validate_parameters({name: value}).tier_shares == validate_parameters({}).tier_shares
        else:
            assert value == config[name], name


def dataclass_missing():
    import dataclasses

    return dataclasses.MISSING


def test_hostile_text_is_inert_in_tables_and_csv(tmp_path):
    """Issue 15: customer ids and currency labels never become markup in the report's tables,
    bare addresses in user text never become links, CSV cells never become formulas."""
    import nbconvert.filters.markdown as md

    evil = "<img src=x onerror=alert(1)>"
    at_risk = pd.DataFrame({"tier": ["Gold", "Platinum"], "p_alive": [0.5, 0.6], "clv": [10.0, 20.0],
                            "value_if_retained": [30.0, 40.0], "value_at_risk": [20.0, 20.0]},
                           index=pd.Index([evil, "=HYPERLINK(\"http://x\")"], name="customer_id"))
    html_out = reporting.format_at_risk(at_risk).to_html()
    assert "<img" not in html_out and "&lt;img" in html_out
    tier = pd.DataFrame({"x": [1.0]}, index=pd.Index(["Gold"], name="tier"))
    styled = reporting.tables.inert(tier.rename(columns={"x": f"Total{'<b>USD</b>'}"}).style).to_html()
    assert "<b>USD</b>" not in styled
    for text in ("see https://evil.example/x", "www.evil.example", "a@evil.example"):
        rendered = md.markdown2html_mistune(reporting.md_escape(text))
        assert "<a " not in rendered
    path = reporting.write_csv(at_risk, tmp_path / "at_risk.csv")
    back = pd.read_csv(path, index_col=0)
    assert list(back.index) == [evil, "'=HYPERLINK(\"http://x\")"]
    assert back["clv"].tolist() == [10.0, 20.0]  # numbers untouched


def test_report_kernel_does_not_import_from_the_callers_folder(tmp_path, monkeypatch):
    """Issue 15: a clvmodels.py in the current folder is not imported by the report kernel."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clvmodels.py").write_text("raise SystemExit('hijacked')\n")
    sample = tmp_path / "log.csv"
    from clvmodels.datasets import load_cdnow

    load_cdnow("sample")[["customer_id", "date", "amount"]].to_csv(sample, index=False)
    folder = reporting.run_report(output_dir=tmp_path / "out", parameters={
        "input_path": "log.csv", "n_draws": 20, "horizon": 26}, progress=False, log=lambda m: None)
    assert (folder / "report.html").exists()


def test_cli_help_lists_every_parameter_with_its_default():
    """Issue 16: `clvmodels report --help` lists every template parameter with its default."""
    from clvmodels.reporting import template_parameters

    out = subprocess.run([sys.executable, "-m", "clvmodels.cli", "report", "--help"], capture_output=True,
                         text=True, timeout=120).stdout
    out = out.split("template parameters of clv_report", 1)[1]
    for name, default in template_parameters("clv_report").items():
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), None)
        assert line is not None, name
        shown = line.split(None, 1)[1]
        if isinstance(default, dict):
            assert all(f'"{k}"' in shown for k in default), (name, line)
        else:
            assert shown.startswith(f'"{default}"' if isinstance(default, str) else str(default)), (name, line)


def test_explore_template_shows_its_code_and_the_report_does_not(tmp_path, finished):
    """Issue 16: the explore template teaches (its HTML shows the code, prose, a figure and the
    model comparison); the main report shows no code."""
    folder = run_report("explore", {}, tmp_path, progress=False)
    page = (folder / "report.html").read_text()
    # code is shown (syntax-highlighted: names sit in their own spans)
    assert "rfm_summary" in page and "select_model" in page and 'class="highlight' in page and "<img" in page
    assert "Which model? Ask a holdout" in page
    assert "pipeline.run_analysis" not in (finished[1] / "report.html").read_text()


def test_the_first_screen_says_when_spend_is_taken_as_constant():
    """Issue 27: a log without price variation: the executive summary's caveats say every purchase
    is taken to be worth the same (the model section says why)."""
    from types import SimpleNamespace

    from clvmodels.datasets import simulate_transactions

    log = simulate_transactions(1500, seed=6).transactions.assign(amount=1.0)
    rfm = clvmodels.rfm_summary(log, time_unit="W")
    spend = clvmodels.GammaGammaModel().fit(rfm)
    analysis = SimpleNamespace(model=clvmodels.BetaGeoModel().fit(rfm), spend=spend, left_truncation=None,
                               config=SimpleNamespace(currency="EUR"))
    notes = reporting.plain_notes(analysis)
    assert any(n.startswith(f"Every purchase is taken to be worth the same (EUR {spend.constant_spend:,.2f})")
               for n in notes)


def _log_csv(path: Path, n: int, bad_rows: tuple[int, ...] = ()) -> Path:
    dates = pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d").tolist()
    for i in bad_rows:
        dates[i] = "31/12/2024"
    pd.DataFrame({"customer_id": [f"c{i % 500}" for i in range(n)], "date": dates,
                  "amount": 10.0}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", ["bad date in the first rows", "missing column"])
def test_the_input_is_checked_before_a_kernel_starts(tmp_path, monkeypatch, case):
    """A missing column or a date format that does not parse is reported by the calling process
    (no kernel, no report folder), with the numbers of the whole log."""
    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started for a log whose first rows are bad")

    monkeypatch.setattr(pm, "execute_notebook", no_kernel)
    log = _log_csv(tmp_path / "log.csv", 12_000, bad_rows=(5, 11_500))
    params = {"input_path": str(log)}
    if case == "missing column":
        params["customer_col"] = "cust"
    out = tmp_path / "reports"
    expected = "2 of 12,000 rows have dates that do not parse" if case != "missing column" else "Missing column"
    with pytest.raises(clvmodels.exceptions.DataValidationError, match=expected):
        run_report("clv_report", params, out, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_a_log_with_good_first_rows_goes_on_to_the_report(tmp_path, monkeypatch):
    """The check reads the first rows only: a problem further down is the report's to find (no
    second pass over a good log in the calling process)."""
    started = []

    def kernel(*args, **kwargs):
        started.append(kwargs["parameters"]["input_path"])
        raise RuntimeError("stop here")

    monkeypatch.setattr(pm, "execute_notebook", kernel)
    log = _log_csv(tmp_path / "log.csv", reporting.config.PREFLIGHT_ROWS + 2_000, bad_rows=(11_500,))
    with pytest.raises(ReportError):
        run_report("clv_report", {"input_path": str(log)}, tmp_path / "reports", progress=False)
    assert started == [str(log)]
