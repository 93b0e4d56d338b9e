"""Maximum likelihood as every model of the package fits it (split from ``_base``): the
optimiser strategies on log-parameters with an analytic gradient, the bounded derivative-free
fallback, the warm start on a subsample of large data, and the search for a limit the estimates
run off to (a stated limiting model instead of a failed fit). :class:`MaximumLikelihood` is a
base of :class:`clvmodels.models._base.BaseModel`; these methods use its parameter names and
settings."""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from clvmodels.exceptions import ConvergenceError

__all__ = ["MaximumLikelihood", "penalized_objective", "subsample_weights", "Objective", "NELDER_MEAD_EVALUATIONS",
           "RIDGE_GTOL", "RIDGE_SD_LOG", "WEAK_SE_LOG", "WARM_SAMPLE", "WARM_MIN_CUSTOMERS"]

#: customers in the subsample that warm-starts fits on large data
WARM_SAMPLE = 20_000
#: fits on fewer customers than this skip the warm start
WARM_MIN_CUSTOMERS = 100_000


def subsample_weights(weights: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """Weights of a random subsample of WARM_SAMPLE customers (multinomial over rows)."""
    total = float(weights.sum())
    if total < WARM_MIN_CUSTOMERS:
        return None
    rng = np.random.default_rng(seed)
    return rng.multinomial(WARM_SAMPLE, weights / total).astype(float)

#: |log parameter| beyond which an estimate has run off to 0 or infinity (e^16 ~ 9e6): the
#: likelihood is flat in that direction and the data do not identify the parameter
_RUNAWAY = 16.0
#: where a pair of parameters that ran off to infinity is placed (e^13.8 ~ 1e6): close enough to
#: the limit that forecasts agree with the limit's to about 1e-4 (tests/models/test_limits.py),
#: and still inside what the formulas evaluate
_LIMIT_LOG = float(np.log(1e6))
#: a pair's larger parameter above this (1e4) is described as the limiting model
_NEAR_LIMIT_LOG = float(np.log(1e4))
#: the smaller of a runaway pair is moved with the larger (keeping their ratio) only while it
#: stays this large (e^3.4 = 30): a shape parameter that small is identified on its own
_SHAPE_LOG = 3.4
#: likelihood evaluations the derivative-free fallback may spend (it ran 119,467 on a 400-customer
#: log's MBG/CNBD-k backtest, 60 s of a 65 s report; the BFGS polish after it does the fine work)
NELDER_MEAD_EVALUATIONS = 2_000
#: a flat ridge: the optimiser stopped for lost precision with the mean gradient below this
RIDGE_GTOL = 1e-3
#: largest standard deviation of a log-parameter along a flat direction of the likelihood
RIDGE_SD_LOG = 3.0
#: standard error on the log scale above which a parameter is reported as poorly identified
#: (its 95% interval spans more than a factor of e^(2 x 1.96) ~ 50)
WEAK_SE_LOG = 1.0

# objective(log_params) -> (value, gradient wrt log_params); value is a mean per customer
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


class MaximumLikelihood:
    """The fitting strategies of :class:`BaseModel` (a base class of it, not used alone)."""

    @property
    def covariance_log_(self) -> Any:
        """Covariance of the log-parameters (the inverse observed information), computed from
        the fit's objective the first time it is asked for."""
        pending = self.__dict__.pop("_covariance_pending", None)
        if pending is not None:
            self.__dict__["_covariance_log"] = pending()
        try:
            return self.__dict__["_covariance_log"]
        except KeyError:
            raise AttributeError("covariance_log_") from None

    @covariance_log_.setter
    def covariance_log_(self, value: Any) -> None:
        self.__dict__.pop("_covariance_pending", None)
        self.__dict__["_covariance_log"] = value

    def _defer_covariance(self, compute: Callable[[], Any]) -> None:
        self.__dict__.pop("_covariance_log", None)
        self.__dict__["_covariance_pending"] = compute

    def __getstate__(self) -> dict[str, Any]:
        """A copy or pickle carries the covariance, not the fit's objective (and its data)."""
        if "_covariance_pending" in self.__dict__:
            _ = self.covariance_log_
        return dict(self.__dict__)

    def _maximise(
        self,
        objective: Objective,
        starts: list[np.ndarray],
        n_customers: float,
        warm: Objective | None = None,
    ) -> None:
        """Minimise ``objective`` over log-parameters, trying strategies until one converges.

        Sets ``params_``, ``log_likelihood_``, ``converged_``, ``covariance_log_`` and
        ``fit_info_``. Raises ConvergenceError when every strategy fails. ``warm``, the same
        objective on a random subsample of customers, gives a starting point and a curvature
        estimate so the full data needs only a handful of iterations.
        """
        self._forget()
        attempts: list[str] = []
        best: optimize.OptimizeResult | None = None
        gtol = float(self.tol)

        safe = _guarded(objective)
        strategies: list[tuple[str, np.ndarray]] = []
        for i, s in enumerate(starts):
            strategies.append((f"BFGS from start {i + 1} ({_fmt_start(s, self._param_names)})", s))
        if warm is not None:
            res = self._warm_start(safe, warm, starts[0], gtol)
            if res is not None:
                attempts.append(f"BFGS warm-started from a {WARM_SAMPLE:,}-customer subsample: {_describe(res)}")
                best = res
                if _good(res):
                    strategies = []
        for label, start in strategies:
            res = self._run_bfgs(safe, start, gtol, int(self.max_iter))
            attempts.append(f"{label}: {_describe(res)}")
            # a converged attempt beats any unconverged one; among equals, the lower objective
            if best is None or (_good(res), -res.fun) > (_good(best), -best.fun):
                best = res
            if _good(res):
                break
        if best is None or not _good(best):
            # derivative-free search from the best point so far, then polish with BFGS again
            assert best is not None
            nm = optimize.minimize(
                lambda th: safe(th)[0], best.x, method="Nelder-Mead",
                options={"maxiter": 10 * int(self.max_iter), "maxfev": NELDER_MEAD_EVALUATIONS,
                         "xatol": 1e-10, "fatol": 1e-14},
            )
            res = self._run_bfgs(safe, nm.x, gtol, int(self.max_iter))
            spent = (f" (Nelder-Mead stopped at its budget of {NELDER_MEAD_EVALUATIONS:,} evaluations)"
                     if nm.nfev >= NELDER_MEAD_EVALUATIONS else "")
            attempts.append(f"Nelder-Mead then BFGS{spent}: {_describe(res)}")
            if (_good(res), -res.fun) > (_good(best), -best.fun):
                best = res
        assert best is not None
        grad_norm = float(np.linalg.norm(safe(best.x)[1]))
        converged = _good(best)
        ridge = False
        held = [False] * len(self._param_names)
        if not converged:
            # the optimiser ran toward a limiting model and lost precision on the way (where it
            # stops depends on the CPU's rounding): decide by a criterion instead of by that path.
            # Tried before accepting a flat ridge: a path toward a limit is flat too, and where
            # it stopped on it would otherwise decide the estimates (on an AMD EPYC with a
            # gradient just below RIDGE_GTOL: the point-mass rate of identical histories off by
            # 4e-4; the machines CI ran on stopped elsewhere and passed)
            found = self._fit_at_limit(safe, best, gtol)
            if found is not None:
                best, held, note = found
                converged = True
                grad_norm = float(np.linalg.norm(safe(best.x)[1]))
                attempts.append(note)
        if not converged and _on_ridge(best, grad_norm):
            # every strategy stopped for lost precision with a tiny gradient: the likelihood is
            # flat along some direction (a ridge); the point reached is as good as any on it
            converged = ridge = True
            attempts.append(f"accepted on a flat ridge (gradient norm {grad_norm:.2g} < {RIDGE_GTOL:g})")
        if not converged:
            raise ConvergenceError(
                f"{type(self).__name__} did not converge.\nTried:\n  - "
                + "\n  - ".join(attempts)
                + f"\nGradient norm at the best point: {grad_norm:.3g} (parameters "
                + ", ".join(f"{n}={v:.4g}" for n, v in zip(self._param_names, np.exp(best.x), strict=True))
                + ").\nWhat to try:\n"
                "  1. check the RFM table: frequency, recency and T in one time unit, recency <= T;\n"
                "  2. add a small penalizer_coef (e.g. 0.001) to keep parameters finite;\n"
                "  3. look for a handful of customers with extreme frequency and fit without them;\n"
                "  4. refit in the other time unit ('D' vs 'W') so rates are not tiny or huge."
            )
        theta, fixed, limits = self._limit_point(best.x)
        fixed = [f or h for f, h in zip(fixed, held, strict=True)]
        runaway = [(n, float(np.exp(t))) for i, (n, t) in enumerate(zip(self._param_names, theta, strict=True))
                   if abs(t) > _RUNAWAY and not fixed[i]]
        if runaway:
            raise ConvergenceError(
                f"{type(self).__name__}: the data do not identify the model - "
                + ", ".join(f"{n} ran off to {v:.3g}" for n, v in runaway)
                + " (customers' histories are too alike, e.g. identical or too few distinct ones).\n"
                "What to try:\n  1. use more customers or a longer observation window;\n"
                "  2. add a small penalizer_coef (e.g. 0.001) to keep parameters finite."
            )
        self.params_ = pd.Series(np.exp(theta), index=list(self._param_names), name="estimate")
        self.converged_ = True
        self.fit_info_ = {
            "source": "fit",
            "attempts": attempts,
            "gradient_norm": grad_norm,
            "iterations": int(best.nit),
            "penalizer_coef": float(self.penalizer_coef),
            "fitted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "flat_ridge": ridge,
            "limits": limits,
            "at_limit": [n for n, f in zip(self._param_names, fixed, strict=True) if f],
        }
        # the covariance is computed when first asked for (standard errors, intervals, a saved
        # file): four more full-data gradients that a fit used only for its estimates (a
        # backtest's candidates, a benchmark's fit) never pays
        free = ~np.asarray(fixed)
        self._defer_covariance(lambda: _observed_covariance(safe, theta, free, n_customers))

    def _limit_point(self, theta: np.ndarray) -> tuple[np.ndarray, list[bool], list[str]]:
        """Where the fit ran to a limiting model, the point that stands for that limit.

        For each pair of :attr:`_limit_pairs` whose larger log-parameter passed
        :data:`_RUNAWAY`, both are moved down together (their ratio, the limit's mean, kept) to
        put the larger at :data:`_LIMIT_LOG`; if the other is small (a shape identified on its
        own) only the runaway one is placed there. Returns the new log-parameters, which ones
        sit at a limit, and the limits in words (also for pairs merely near one).
        """
        theta = np.array(theta, float)
        names = list(self._param_names)
        fixed = [False] * len(names)
        words: list[str] = []
        for first, second in self._limit_pairs:
            i, j = names.index(first), names.index(second)
            big = max(theta[i], theta[j])
            if big > _RUNAWAY:
                other = min(theta[i], theta[j])
                shift = big - _LIMIT_LOG
                if other - shift >= _SHAPE_LOG:
                    theta[i] -= shift
                    theta[j] -= shift
                    fixed[i] = fixed[j] = True
                else:
                    k = i if theta[i] >= theta[j] else j
                    theta[k] = _LIMIT_LOG
                    fixed[k] = True
            if first in self._vanishing and theta[i] < -_RUNAWAY:
                # the mixing distribution piles up at zero; its scale no longer matters
                theta[i] = -_LIMIT_LOG
                fixed[i] = fixed[j] = True
            if max(theta[i], theta[j]) > _NEAR_LIMIT_LOG or (first in self._vanishing and theta[i] < -_NEAR_LIMIT_LOG):
                words.append(self._describe_limit(first, second, float(np.exp(theta[i])), float(np.exp(theta[j]))))
        return theta, fixed, words

    def _fit_at_limit(
        self, safe: Objective, best: optimize.OptimizeResult, gtol: float,
    ) -> tuple[optimize.OptimizeResult, list[bool], str] | None:
        """The limiting model the failed fit was running to, found by a criterion.

        For every combination of :attr:`_limit_pairs` that the best point approaches (a pair's
        larger log-parameter past :data:`_NEAR_LIMIT_LOG`, or a vanishing shape below minus
        that), the model is refitted on that face of the parameter space: the pair's larger
        parameter held at :data:`_LIMIT_LOG` (the other free, so the limit's mean is
        estimated), a vanishing shape held at ``1 / e^_LIMIT_LOG``. A face is the answer when
        (1) the fit on it converges, (2) moving further toward the limit does not lower the
        likelihood, and (3) it is as likely as the best point any strategy reached, up to
        what the rest of the way to the limit would still gain. Among faces that pass, the most
        likely wins. Returns the point, which parameters sit at the limit and a line for
        ``fit_info_['attempts']``, or None when no face passes (the fit then fails as before).
        """
        names = list(self._param_names)
        x0 = np.asarray(best.x, float)
        pairs: list[tuple[str, int, int]] = []
        for first, second in self._limit_pairs:
            i, j = names.index(first), names.index(second)
            if max(x0[i], x0[j]) > _NEAR_LIMIT_LOG:
                pairs.append(("infinite", i, j))
            elif first in self._vanishing and x0[i] < -_NEAR_LIMIT_LOG:
                pairs.append(("zero", i, j))
        found: list[tuple[float, np.ndarray, list[bool], str]] = []
        best_rounding = _rounding(safe, x0) if pairs else 0.0
        for size in range(1, len(pairs) + 1):
            for face in itertools.combinations(pairs, size):
                start = x0.copy()
                held = np.zeros(len(names), bool)
                for kind, i, j in face:
                    if kind == "infinite":
                        big = i if x0[i] >= x0[j] else j
                        shift = x0[big] - _LIMIT_LOG
                        start[[i, j]] -= shift  # the pair's ratio (the limit's mean) kept
                        held[big] = True
                    else:
                        start[i] = -_LIMIT_LOG
                        held[[i, j]] = True  # with no mass away from zero the scale is moot
                free = ~held

                def on_face(z: np.ndarray, start: np.ndarray = start, free: np.ndarray = free):
                    theta = start.copy()
                    theta[free] = z
                    value, grad = safe(theta)
                    return value, grad[free]

                res = self._run_bfgs(on_face, start[free], gtol, int(self.max_iter))
                if not _good(res):
                    continue
                theta = start.copy()
                theta[free] = res.x
                push = np.zeros(len(names))
                fixed = held.copy()
                for kind, i, j in face:
                    if kind == "zero":
                        push[i] = -1.0
                        continue
                    big, other = (i, j) if held[i] else (j, i)
                    push[big] = 1.0
                    if theta[other] >= _SHAPE_LOG:  # the pair runs off together (ratio kept)
                        push[other] = 1.0
                        fixed[other] = True
                value = safe(theta)[0]
                # what the rest of the way to the limit still gains: the step to e^2 times further
                # out, extrapolated as a gain that falls off like 1/parameter (a mixing
                # distribution's spread); two steps further the rounding of the huge log-gamma
                # terms would already swamp it
                rest = (value - safe(theta + 2.0 * push)[0]) / (1.0 - np.exp(-2.0))
                slack = _rounding(safe, theta) + 1e-12 * (1.0 + abs(value))
                if rest < -slack or value > best.fun + max(rest, 0.0) + slack + best_rounding:
                    continue
                words = " and ".join(f"{names[i]}/{names[j]} at {'zero' if kind == 'zero' else 'infinity'}"
                                     for kind, i, j in face)
                found.append((value, theta, fixed.tolist(), words))
        if not found:
            return None
        value, theta, fixed, words = min(found, key=lambda f: f[0])
        point = optimize.OptimizeResult(x=theta, fun=value, jac=safe(theta)[1], nit=0, success=True, status=0,
                                        message="limit")
        return point, fixed, f"the limiting model ({words}): converged there, objective {value:.8g}"

    def _describe_limit(self, first: str, second: str, v1: float, v2: float) -> str:
        """The limiting model a pair of parameters ran to, in words (models override)."""
        return f"{first} and {second} are very large ({v1:.3g}, {v2:.3g}): the model is at a limit."

    @property
    def poorly_identified_(self) -> list[str]:
        """Parameters the data pin down poorly: standard error above ``WEAK_SE_LOG`` on the log
        scale (a 95% interval wider than a factor of 50), or no standard error at all from a
        fit; parameters placed at a limit are reported through ``fit_info_['limits']``."""
        self._check_fitted()
        cov = self.covariance_log_
        if cov is None:
            return []
        at_limit = set((self.fit_info_ or {}).get("at_limit", []))
        se = np.sqrt(np.abs(np.diag(np.asarray(cov, float))))
        return [n for n, v in zip(self._param_names, se, strict=True)
                if n not in at_limit and (not np.isfinite(v) or v > WEAK_SE_LOG)]

    def _warm_start(self, safe: Objective, warm: Objective, start: np.ndarray, gtol: float):
        safe_warm = _guarded(warm)

        r1 = self._run_bfgs(safe_warm, start, 1e-7, int(self.max_iter))
        if not _good(r1):
            return None
        h = _numeric_hessian(lambda th: safe_warm(th)[1], r1.x)
        try:
            h_inv = np.linalg.inv(0.5 * (h + h.T))
            h_inv = 0.5 * (h_inv + h_inv.T)
            np.linalg.cholesky(h_inv)
        except np.linalg.LinAlgError:
            return None
        return optimize.minimize(
            safe, r1.x, jac=True, method="BFGS",
            options={"maxiter": int(self.max_iter), "gtol": gtol, "hess_inv0": h_inv},
        )

    @staticmethod
    def _run_bfgs(fun: Objective, start: np.ndarray, gtol: float, max_iter: int) -> optimize.OptimizeResult:
        # BFGS needs far fewer evaluations than L-BFGS-B near the optimum here (its line
        # search stalls once objective differences reach rounding level)
        return optimize.minimize(
            fun, start, jac=True, method="BFGS", options={"maxiter": max_iter, "gtol": gtol},
        )



def _guarded(objective: Objective) -> Objective:
    """The objective with a huge value where it is not finite, so line searches back off; the
    last point's value is kept, so asking again where the optimiser stopped (the gradient's
    norm, the Hessian's base point) costs nothing (two of about twelve full-data evaluations of
    a warm-started fit)."""
    last: dict[str, Any] = {}

    def safe(theta: np.ndarray) -> tuple[float, np.ndarray]:
        key = np.asarray(theta, dtype=float).tobytes()
        if last.get("key") == key:
            return last["value"], last["grad"].copy()
        with np.errstate(all="ignore"):
            value, grad = objective(theta)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            value, grad = 1e300, np.zeros_like(theta)
        last.update(key=key, value=value, grad=np.array(grad, dtype=float))
        return value, grad

    return safe


def penalized_objective(
    total_and_grad: Callable[[tuple[float, ...]], tuple[float, np.ndarray]],
    theta: np.ndarray,
    n: float,
    penalizer: float,
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood plus ``penalizer * sum(params**2)`` and its gradient, both
    in the log-parameters ``theta`` (``total_and_grad`` works in the natural parameters)."""
    params = np.exp(theta)
    total, g = total_and_grad(tuple(params))
    value = -total / n + penalizer * (params**2).sum()
    grad = -g * params / n + 2 * penalizer * params**2
    return value, grad


def _rounding(objective: Objective, theta: np.ndarray) -> float:
    """How far the objective's value at ``theta`` is from its exact value, measured: the spread
    of the objective over moves of 1e-12 in the log-parameters (which change the exact value by
    far less). Near a limit the log-gamma terms of huge parameters cancel and this grows to
    1e-5 and more; comparing two points closer than this is comparing rounding."""
    rng = np.random.default_rng(0)
    values = [objective(theta + rng.normal(0.0, 1e-12, len(theta)))[0] for _ in range(8)]
    return float(np.ptp(values + [objective(theta)[0]]))


def _on_ridge(res: optimize.OptimizeResult, grad_norm: float) -> bool:
    """BFGS stopped because the objective no longer changes in the last digits (status 2,
    lost precision) with a small gradient: a flat ridge, not a failure to get anywhere."""
    return bool(np.isfinite(res.fun) and res.fun < 1e299 and getattr(res, "status", 0) == 2
                and grad_norm < RIDGE_GTOL)


def _good(res: optimize.OptimizeResult) -> bool:
    return bool(np.isfinite(res.fun) and res.fun < 1e299 and (res.success or np.linalg.norm(res.jac) < 1e-5))


def _describe(res: optimize.OptimizeResult) -> str:
    status = "converged" if _good(res) else f"failed ({res.message})"
    return f"{status}, objective {res.fun:.8g}, gradient norm {np.linalg.norm(res.jac):.2g}"


def _observed_covariance(safe: Objective, theta: np.ndarray, free: np.ndarray, n_customers: float) -> np.ndarray:
    """The inverse observed information on the log scale at ``theta``: the Hessian of the total
    (not mean) objective by differences of the analytic gradient; parameters placed at a limit
    (not ``free``) are held fixed (no sampling variance: the data only say they are very large)."""
    hess = _numeric_hessian(lambda th: safe(th)[1], theta) * n_customers
    hess = 0.5 * (hess + hess.T)
    cov = np.zeros_like(hess)
    sub = hess[np.ix_(free, free)]
    if sub.size and np.all(np.isfinite(sub)):
        # on a ridge the information has (numerically) zero or slightly negative curvature
        # along the ridge; its variance is capped at RIDGE_SD_LOG^2 on the log scale, which
        # is what a weak normal prior on the log-parameters would do, and the parameters
        # involved are reported by poorly_identified_
        vals, vecs = np.linalg.eigh(sub)
        vals = np.maximum(vals, 1.0 / RIDGE_SD_LOG**2)
        cov[np.ix_(free, free)] = (vecs / vals) @ vecs.T
    elif sub.size:
        cov = np.full_like(hess, np.nan)
    return cov


def _fmt_start(start: np.ndarray, names: tuple[str, ...]) -> str:
    return ", ".join(f"{n}={v:.3g}" for n, v in zip(names, np.exp(start), strict=True))


def _numeric_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Forward differences of the analytic gradient (one gradient per parameter)."""
    k = len(x)
    h = np.empty((k, k))
    g0 = grad(x)
    for i in range(k):
        step = 1e-6 * max(1.0, abs(x[i]))
        e = np.zeros(k)
        e[i] = step
        h[:, i] = (grad(x + e) - g0) / step
    return h
