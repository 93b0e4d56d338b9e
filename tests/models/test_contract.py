"""One contract for every registered model (issue 26, item 2): each class of
``clvmodels.models.registry.MODELS`` is checked the same way - the estimator contract (``__init__``
stores its settings, ``fit`` returns self, learned state ends in ``_``, a clear NotFittedError
before ``fit``), ``summary``, ``covariance_log_``, ``repr``, the save/load round trip through
``load_model`` and the common predictions, finite and indexed alike. A new model family is one
file and one registry line; this test then covers it (its ``inputs`` must be one built here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels
from clvmodels.datasets import load_cdnow, load_donations, simulate_transactions
from clvmodels.exceptions import NotFittedError, ParameterError
from clvmodels.models import load_model
from clvmodels.models.registry import MODELS, models_where

HORIZON = 10.0
#: a discount rate per time unit for the residual lifetime (10% a year in weeks)
DELTA = 0.0018


@pytest.fixture(scope="module")
def inputs():
    """Data for every kind of ``inputs`` a registered model may take, built once."""
    log = load_cdnow("sample")
    rfm = clvmodels.rfm_summary(log, time_unit="W", observation_end="1997-09-30")
    channel = np.where(np.arange(len(rfm)) % 3 == 0, "web", "store")
    long_log = simulate_transactions(1500, period=160.0, seed=3).transactions  # three years: a season can be told
    rng = np.random.default_rng(0)
    theta = rng.beta(0.7, 1.5, 3000)
    lifetime = rng.geometric(theta)
    periods = pd.DataFrame({"periods": np.minimum(lifetime, 8), "churned": lifetime <= 8})
    donations = load_donations()
    return {
        "rfm": ((rfm,), {}),
        "rfm+litt": ((clvmodels.rfm_summary(log, time_unit="W", observation_end="1997-09-30", regularity=True),), {}),
        "rfm+calendar": ((clvmodels.rfm_summary(long_log, time_unit="W", calendar=True),), {}),
        "rfm+covariates": ((rfm.assign(channel=channel),), {}),  # covariates are columns of the data
        "discrete": ((donations,), {"weights": donations["weights"]}),
        "periods": ((periods,), {}),
    }


def _predictions(model, info, args):
    """The predictions every model of a kind gives, as arrays indexed like its data."""
    data = args[0]
    if info.kind == "purchase":
        return {"probability_alive": model.probability_alive(data),
                "expected_purchases": model.expected_purchases(data, HORIZON),
                "expected_purchases_new_customer": model.expected_purchases_new_customer(HORIZON),
                "residual_lifetime": model.expected_discounted_residual_purchases(data, DELTA),
                "probability_purchases": model.probability_purchases(np.arange(4), HORIZON)}
    if info.kind == "spend":
        return {"expected_spend": model.expected_spend(data)}
    if info.kind == "discrete":
        return {"probability_alive": model.probability_alive(data),
                "expected_purchases": model.expected_purchases(data, 5),
                "residual_lifetime": model.expected_discounted_residual_purchases(data, 0.1)}
    if info.kind == "contractual":
        return {"survival": model.survival(np.arange(12)), "derl": model.derl(np.arange(5), 0.1)}
    raise AssertionError(f"no predictions known for kind {info.kind!r}: add them here")


@pytest.fixture(scope="module")
def fitted(inputs):
    """Each registered class fitted once on its kind of data."""
    out = {}
    for name, info in MODELS.items():
        assert info.inputs in inputs, f"{name}: no data built for inputs {info.inputs!r}; add it to inputs()"
        args, kw = inputs[info.inputs]
        out[name] = (model := _configured(info), model.fit(*args, **kw), args)
    return out


def _configured(info):
    """A model of the registered class; a covariate model reads the data's ``channel`` column."""
    model = info.cls()
    if info.inputs == "rfm+covariates":
        model.set_params(**{k: ["channel"] for k in ("purchase", "dropout", "spend") if k in model.get_params()})
    return model


NAMES = sorted(MODELS)


def test_the_registry_is_the_package_list():
    """Every registered class is importable from the package and its models, under its name; the
    model choice's candidates come from the registry."""
    for name, info in MODELS.items():
        assert getattr(clvmodels, name) is info.cls
        assert getattr(clvmodels.models, name) is info.cls
    assert set(clvmodels.selection.CANDIDATES) == set(models_where(choice="base"))
    assert {c.__name__ for c in (clvmodels.BetaGeoModel, clvmodels.ParetoNBDModel, clvmodels.MBGCNBDModel,
                                 clvmodels.CovariateParetoNBDModel, clvmodels.BetaDiscreteWeibullModel)} <= set(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_init_stores_settings_and_set_params_checks_them(name):
    cls = MODELS[name].cls
    model = cls()
    settings = model.get_params()
    assert cls(**settings).get_params() == settings
    assert model.set_params(**settings) is model
    with pytest.raises(ParameterError, match="Unknown parameter 'no_such_setting'"):
        model.set_params(no_such_setting=1)
    assert name in repr(model)


@pytest.mark.parametrize("name", NAMES)
def test_before_fit_a_clear_not_fitted_error(name, inputs):
    info = MODELS[name]
    model = info.cls()
    with pytest.raises(NotFittedError, match="not fitted"):
        _ = model.summary
    with pytest.raises(NotFittedError, match="not fitted"):
        _predictions(model, info, inputs[info.inputs][0])


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_with_the_common_fitted_state(name, fitted):
    model, returned, _ = fitted[name]
    assert returned is model
    params = model.params_
    assert isinstance(params, pd.Series) and len(params) and np.isfinite(params.to_numpy(float)).all()
    assert np.isfinite(model.log_likelihood_)
    assert isinstance(model.n_customers_, int) and model.n_customers_ > 0
    cov = np.asarray(model.covariance_log_, float)
    assert cov.shape == (len(params), len(params))
    summary = model.summary
    assert isinstance(summary, pd.DataFrame)
    assert list(summary.columns) == ["estimate", "std_error", "lower_95", "upper_95"]
    assert list(summary.index) == list(params.index)
    np.testing.assert_allclose(summary["estimate"], params.to_numpy(float))
    text = repr(model)
    assert name in text and "fitted on" in text
    assert "<b>" in model._repr_html_()


@pytest.mark.parametrize("name", NAMES)
def test_common_predictions_are_finite_and_indexed_alike(name, fitted):
    model, _, args = fitted[name]
    info = MODELS[name]
    for what, values in _predictions(model, info, args).items():
        arr = np.asarray(values, float)
        assert np.isfinite(arr).all(), f"{name}.{what} is not finite"
        if isinstance(values, pd.Series) and what not in ("probability_purchases",):
            assert values.index.equals(args[0].index), f"{name}.{what} is not indexed like the data"
    if info.kind == "purchase":
        assert model.probability_purchases(np.arange(200), HORIZON).sum() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_weights_count_customers(name, inputs):
    """``fit(data, weights=w)``: a row of weight 2 counts as two customers, so weights of 2
    everywhere give the same estimates as none (the mean log-likelihood is the same); negative
    weights are refused by name."""
    info = MODELS[name]
    args, kw = inputs[info.inputs]
    plain = _configured(info).fit(*args, **kw)
    # a calendar table's purchase calendar counts each customer once: its weights must agree with it
    factor = 1.0 if info.inputs == "rfm+calendar" else 2.0
    w = factor * np.asarray(kw.get("weights", np.ones(len(args[0]))), float)
    doubled = _configured(info).fit(*args, **{**kw, "weights": w})
    np.testing.assert_allclose(doubled.params_.to_numpy(float), plain.params_.to_numpy(float), rtol=2e-4, atol=1e-6)
    with pytest.raises(clvmodels.exceptions.DataValidationError, match="weights"):
        _configured(info).fit(*args, **{**kw, "weights": -w})


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, fitted, tmp_path):
    model, _, args = fitted[name]
    info = MODELS[name]
    path = model.save(tmp_path / "model.json")
    back = load_model(path)
    assert type(back) is info.cls
    pd.testing.assert_series_equal(back.params_, model.params_)
    np.testing.assert_array_equal(np.asarray(back.covariance_log_), np.asarray(model.covariance_log_))
    # a setting the fit chose and that defines the fitted model (MBG/CNBD-k's k) is kept as chosen
    defining = model._defining() if hasattr(model, "_defining") else {}
    assert back.get_params() == {**model.get_params(), **defining}
    before, after = _predictions(model, info, args), _predictions(back, info, args)
    for what in before:
        np.testing.assert_allclose(np.asarray(after[what], float), np.asarray(before[what], float), rtol=1e-12,
                                   err_msg=f"{name}.{what} changed on the round trip")
    other = next(n for n in NAMES if n != name and MODELS[n].inputs == info.inputs) if sum(
        MODELS[n].inputs == info.inputs for n in NAMES) > 1 else None
    if other is not None:
        with pytest.raises(clvmodels.exceptions.ModelFileError, match="not a"):
            MODELS[other].cls.load(path)


@pytest.mark.parametrize("damage", [
    {"theta": [1e308] * 5},
    {"params": ["r"] * 5000, "theta": [0.0] * 5000},
    {"covariance_log": [[0.0]]},
    {"levels": {"channel": [1, 2]}},
    {"time_unit": "M"},
    {"init_params": {"purchase": ["channel"], "evil": 1}},
    {"log_likelihood": None},
])
def test_damaged_covariate_model_files_are_refused_by_name(damage, fitted, tmp_path):
    """A covariate model file is read as hostile input like any other model file: one
    ModelFileError naming the file, before any work (no huge arrays, no overflow)."""
    model = fitted["CovariateBetaGeoModel"][0]
    data = {**model.to_dict(), **damage}
    path = tmp_path / "damaged.json"
    path.write_text(__import__("json").dumps(data))
    with pytest.raises(clvmodels.exceptions.ModelFileError, match="damaged.json"):
        load_model(path)


def _forms():
    """(family, terms, configured class, settings the family fixes) for every declared form."""
    return [(info.cls, terms, cls, fixed) for info in MODELS.values()
            for terms, (cls, fixed) in sorted(info.cls.__dict__.get("_configured", {}).items())]


def test_covariates_and_calendar_are_configurations_of_the_families():
    """Each form with covariates or a calendar is built from its family (``with_covariates``,
    ``with_calendar``) with the settings that family fixes, is a registered model, and the
    families without such a form say which have one."""
    forms = _forms()
    assert {(f.__name__, t) for f, t, _, _ in forms} == {
        ("BetaGeoModel", "covariates"), ("ModifiedBetaGeoModel", "covariates"), ("ParetoNBDModel", "covariates"),
        ("GammaGammaModel", "covariates"), ("BetaGeoModel", "calendar"), ("ParetoNBDModel", "calendar")}
    for family, terms, cls, fixed in forms:
        model = getattr(family, f"with_{terms}")()
        assert type(model) is cls and cls.__name__ in MODELS and isinstance(model, clvmodels.models.BaseModel)
        assert {k: model.get_params()[k] for k in fixed} == fixed
    assert clvmodels.BetaGeoModel.with_covariates(purchase=["channel"]).get_params()["purchase"] == ["channel"]
    with pytest.raises(ParameterError, match="MBGCNBDModel has no form with covariates.*BetaGeoModel"):
        clvmodels.MBGCNBDModel.with_covariates(purchase=["channel"])
    with pytest.raises(TypeError, match="terms must be one of"):
        type("Odd", (clvmodels.BetaGeoModel,), {}, terms="weather", configures={clvmodels.BetaGeoModel: {}})


@pytest.mark.parametrize("name", sorted({cls.__name__ for _, _, cls, _ in _forms()}))
def test_a_configured_model_gives_its_family_plain_model(name, fitted):
    """``plain_model()``: the family's own model under the terms (the reference customer's
    parameters; a seasonal model's customers on its clock), a model of a family it configures."""
    model = fitted[name][0]
    plain = model.plain_model()
    families = {f for f, _, cls, _ in _forms() if cls.__name__ == name}
    assert type(plain) in families
    base = list(plain.params_.index)
    np.testing.assert_allclose(plain.params_.to_numpy(float), model.params_[base].to_numpy(float))
