"""The report's forecasts from a model with covariates (issue 17, item 4).

Given their covariates, a customer of :class:`clvmodels.CovariateBetaGeoModel` or
:class:`clvmodels.CovariateParetoNBDModel` is a customer of the plain model with that covariate
row's parameters. So every prediction of the report is the plain model's, per distinct covariate
row (:class:`ByCovariateRow`): P(alive), churn, purchases, CLV, tiers, the what-if, the budget
of a new customer (a mixture over the rows, weighted by their customers), the at-risk list and
the per-customer intervals. The tier intervals cannot be computed row by row (every row's
parameters move with the same coefficients), so they linearise the tier totals in the covariate
model's parameters ``theta`` (base parameters and coefficients), the delta method, as
:func:`clvmodels.tier_intervals` does at scale: each row's log-parameters are linear in
``theta``, its forecasts' derivatives come by central differences, and draws of ``theta`` from
its estimated covariance move every row together. Each row's plain model also carries the
covariance of its own log-parameters induced by ``theta``'s (``A Sigma A'``), so per-customer
intervals include parameter uncertainty.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clvmodels.forecast import (
    acquisition_budget,
    forecast,
    forecast_by_model,
    forecast_settings,
    history_groups,
)
from clvmodels.intervals import (
    forecast_intervals,
    log_jacobian,
    purchase_jacobian,
    simulated_deviations,
)
from clvmodels.models.gamma_gamma import conditional_spend
from clvmodels.tiers import SIMULATED_CUSTOMERS, TIERS, retention_what_if, tier_groups

__all__ = ["ByCovariateRow", "covariate_what_if"]


@dataclass
class ByCovariateRow:
    """A fitted covariate purchase model and a table's customers split by covariate row.

    ``codes[i]``: the row of customer ``i`` of ``index``; ``models[c]``: the plain model of row
    ``c`` (with the covariance of its log-parameters); ``maps[c]``: the derivative of its
    log-parameters in the covariate model's ``theta`` (4 x dim, exact: the map is linear)."""

    model: Any
    index: pd.Index
    codes: np.ndarray
    models: list[Any]
    maps: list[np.ndarray]
    labels: list[str]
    """Each row's covariate values in words ("channel = web, region = north")."""

    @classmethod
    def build(cls, model: Any, rfm: pd.DataFrame, covariates: pd.DataFrame) -> ByCovariateRow:
        dp, dd, _ = model._designs(covariates.loc[rfm.index])
        params = model._plain_params(dp.matrix, dd.matrix).round(14)
        codes, uniques = pd.factorize(pd.MultiIndex.from_frame(params))
        first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
        Zp, Zd = dp.matrix[first], dd.matrix[first]
        theta = np.asarray(model.theta_, float)
        base = np.log(model._plain_params(Zp, Zd).to_numpy())  # (rows, 4)
        maps = np.empty((len(first), base.shape[1], len(theta)))
        for j in range(len(theta)):
            moved = copy.copy(model)
            moved.theta_ = theta + np.eye(len(theta))[j]
            maps[:, :, j] = np.log(moved._plain_params(Zp, Zd).to_numpy()) - base
        cov = getattr(model, "covariance_log_", None)
        plain = model._plain_cls()
        models = []
        for c, row in enumerate(uniques):
            row_cov = None if cov is None or not np.all(np.isfinite(cov)) else maps[c] @ cov @ maps[c].T
            models.append(plain.from_params(dict(zip(params.columns, row, strict=True)), time_unit=model.time_unit_,
                                            covariance=row_cov))
        names = list(dict.fromkeys([*model.purchase, *model.dropout]))
        rows = covariates.loc[rfm.index[first], names]
        labels = [", ".join(f"{k} = {v}" for k, v in row.items()) for _, row in rows.iterrows()]
        return cls(model, rfm.index, np.asarray(codes), models, list(maps), labels)

    def parts(self, table: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
        """``table`` (indexed like some of the customers) split by covariate row."""
        codes = pd.Series(self.codes, index=self.index).reindex(table.index).to_numpy()
        return [(c, table[codes == c]) for c in range(len(self.models)) if (codes == c).any()]

    @property
    def reference_row(self) -> int:
        """The row with most customers."""
        return int(np.bincount(self.codes).argmax())

    @property
    def reference_model(self) -> Any:
        """The plain model of the row with most customers (for figures of one customer)."""
        return self.models[self.reference_row]

    def forecast(self, spend: Any, rfm: pd.DataFrame, **settings: Any) -> pd.DataFrame:
        codes = pd.Series(self.codes, index=self.index).reindex(rfm.index).to_numpy()
        return forecast_by_model(codes, self.models, spend, rfm, **settings)

    def forecast_intervals(self, spend: Any, rfm: pd.DataFrame, **kw: Any) -> pd.DataFrame:
        return pd.concat([forecast_intervals(self.models[c], spend, part, **kw)
                          for c, part in self.parts(rfm)]).reindex(rfm.index)

    def acquisition_budget(self, spend: Any, **settings: Any) -> pd.Series:
        """A new customer like the existing ones: the rows' budgets weighted by their customers."""
        w = np.bincount(self.codes, minlength=len(self.models)).astype(float)
        w /= w.sum()
        budgets = [acquisition_budget(m, spend, **settings) for m in self.models]
        out = sum(wc * b for wc, b in zip(w, budgets, strict=True))
        out.attrs.update(budgets[0].attrs)
        return out.rename("acquisition_budget")

    def retention_what_if(self, spend: Any, rfm: pd.DataFrame, tiers: pd.Series, **kw: Any) -> pd.DataFrame:
        tables = [retention_what_if(self.models[c], spend, part, tiers.loc[part.index], **kw)
                  for c, part in self.parts(rfm)]
        out = sum(t[["clv", "clv_what_if", "expected_purchases", "expected_purchases_what_if", "lifetime_clv",
                     "lifetime_clv_what_if"]] for t in tables)
        for pre in ("", "lifetime_"):
            out[f"{pre}change"] = out[f"{pre}clv_what_if"] - out[f"{pre}clv"]
            out[f"{pre}change_pct"] = 100 * out[f"{pre}change"] / out[f"{pre}clv"].where(out[f"{pre}clv"] != 0)
        out.attrs.update(tables[0].attrs)
        return out

    def expected_customers_by_frequency(self, rfm: pd.DataFrame, max_frequency: int) -> pd.DataFrame:
        tables = [self.models[c].expected_customers_by_frequency(part, max_frequency=max_frequency)
                  for c, part in self.parts(rfm)]
        return sum(tables)

    def tier_intervals(self, spend: Any, rfm: pd.DataFrame, tiers: pd.Series, *, horizon: float,
                       discount_rate: float = 0.10, margin: float = 1.0, cost_to_serve: float = 0.0,
                       level: float = 0.90, n_draws: int = 200, seed: int | None = 0) -> pd.DataFrame:
        """Intervals of the tiers' totals, every row moving with the same draw of ``theta``
        (see the module notes): purchases and revenue with the randomness of purchases
        simulated for up to :data:`clvmodels.tiers.SIMULATED_CUSTOMERS` customers, CLV with
        parameter uncertainty only - as :func:`clvmodels.tier_intervals`."""
        s = forecast_settings(self.models[0], rfm, horizon, discount_rate, margin, cost_to_serve, None)
        rng = np.random.default_rng(seed)
        k = len(TIERS)
        n = len(rfm)
        dim = len(self.model.theta_)
        p, q, v = spend._p()
        e = {name: np.zeros(k) for name in ("purch", "rev", "clv")}
        j_theta = {name: np.zeros((dim, k)) for name in ("purch", "rev", "clv")}
        j_spend = {name: np.zeros((3, k)) for name in ("rev", "clv")}
        sims = []
        n_sim_tier = np.zeros(k)
        n_tier = np.zeros(k)
        for c, part in self.parts(rfm):
            tm = self.models[c]
            g = tier_groups(part, tiers.loc[part.index], rng=rng,
                            max_simulated=max(100, int(np.ceil(SIMULATED_CUSTOMERS * len(part) / n))))
            pairs = history_groups(tm, g.x, g.tx, g.T)
            base, jac = purchase_jacobian(tm, s, g.x, g.tx, g.T, pairs)  # (4, G), (4, 4, G)
            ss, d_ss = log_jacobian(g.spend_sums, (p, q, v))

            def by_tier(w, code=g.code):
                return np.bincount(code, weights=w, minlength=k)

            e["purch"] += by_tier(g.n * base[0])
            e["rev"] += by_tier(base[0] * ss)
            e["clv"] += by_tier(s.margin * base[1] * ss - s.cost_to_serve * g.n * base[2])
            A = self.maps[c]  # (4 log-params, dim)
            jp = np.array([by_tier(g.n * jac[j, 0]) for j in range(jac.shape[0])])
            jr = np.array([by_tier(jac[j, 0] * ss) for j in range(jac.shape[0])])
            jc = np.array([by_tier(s.margin * jac[j, 1] * ss - s.cost_to_serve * g.n * jac[j, 2])
                           for j in range(jac.shape[0])])
            j_theta["purch"] += A.T @ jp
            j_theta["rev"] += A.T @ jr
            j_theta["clv"] += A.T @ jc
            j_spend["rev"] += np.array([by_tier(base[0] * d_ss[j]) for j in range(3)])
            j_spend["clv"] += np.array([by_tier(s.margin * base[1] * d_ss[j]) for j in range(3)])
            gi = g.sim_group
            sims.append((tm, g, base[0][gi], base[3][gi], conditional_spend(p, q, v, g.sim_x, g.sim_m),
                         (g.sim_x > 0) & (g.sim_m > 0)))
            n_sim_tier += np.bincount(g.sim_code, minlength=k)
            n_tier += g.n_tier
        scale = np.sqrt(np.divide(n_tier, n_sim_tier, out=np.zeros(k), where=n_sim_tier > 0))
        cov = getattr(self.model, "covariance_log_", None)
        omitted = cov is None or not np.all(np.isfinite(cov))
        d_theta = (np.zeros((n_draws, dim)) if omitted else
                   rng.multivariate_normal(np.zeros(dim), cov, n_draws, method="eigh"))
        spend_cov = getattr(spend, "covariance_log_", None)
        d_spend = (np.zeros((n_draws, 3)) if spend_cov is None or not np.all(np.isfinite(spend_cov)) else
                   rng.multivariate_normal(np.zeros(3), spend_cov, n_draws))
        purchases, revenue, clv = (np.zeros((n_draws, k + 1)) for _ in range(3))
        for i in range(n_draws):
            dev_p, dev_r = np.zeros(k), np.zeros(k)
            for tm, g, s_exp, p_alive, s_spend, buyers in sims:
                a, b = simulated_deviations(rng, tm, s.horizon, p_alive, g.sim_x, g.sim_T, g.sim_m, buyers,
                                             (p, q, v), s_exp, s_spend, g.sim_code, k, g.tx[g.sim_group])
                dev_p += a
                dev_r += b
            purchases[i, :k] = e["purch"] + d_theta[i] @ j_theta["purch"] + scale * dev_p
            revenue[i, :k] = e["rev"] + d_theta[i] @ j_theta["rev"] + d_spend[i] @ j_spend["rev"] + scale * dev_r
            clv[i, :k] = e["clv"] + d_theta[i] @ j_theta["clv"] + d_spend[i] @ j_spend["clv"]
        for arr in (purchases, revenue, clv):
            arr[:, k] = arr[:, :k].sum(axis=1)
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        out = pd.DataFrame(index=pd.Index([*TIERS, "Total"], name="tier"))
        for name, arr in (("expected_purchases", purchases), ("expected_revenue", revenue), ("total_clv", clv)):
            qs = np.quantile(arr, [lo, hi], axis=0)
            out[f"{name}_lower"], out[f"{name}_upper"] = qs[0], qs[1]
        out.attrs.update({"level": level, "n_draws": n_draws, "simulated_customers": int(n_sim_tier.sum()),
                          "parameter_uncertainty": ("omitted: the covariate model has no parameter covariance"
                                                    if omitted else "included (delta method in the covariate "
                                                    "model's parameters)")})
        return out


def covariate_what_if(model: Any, spend_model: Any, rfm: pd.DataFrame, dropout_like: dict[str, Any],
                      covariates: pd.DataFrame | None = None, **settings: Any) -> pd.DataFrame:
    """CLV as forecast and if the dropout covariates of a covariate purchase model were as
    ``dropout_like`` says (e.g. ``{"channel": "A"}``: channel B customers dropping out like
    channel A's), purchases unchanged. ``covariates``: as for :func:`clvmodels.forecast` (default:
    ``rfm``'s own columns); ``settings``: :func:`clvmodels.forecast`'s (``horizon``, ...)."""
    before = forecast(model, spend_model, rfm, covariates=covariates, **settings)
    after = forecast_by_model(*model.customer_models(rfm, covariates, dropout_like=dropout_like), spend_model, rfm,
                              **settings)
    return pd.DataFrame({"clv": before["clv"], "clv_what_if": after["clv"],
                         "p_alive": before["p_alive"], "p_alive_what_if": after["p_alive"]}, index=rfm.index)
