"""Customer lifetime value: BG/NBD and Pareto/NBD purchase models, Gamma-Gamma spend model.

Pure numpy/scipy. Customers are summarised as (x, t_x, T): repeat purchases, time of the
last purchase and age, all measured from the first purchase in one time unit (weeks in the
published CDNOW results). Identical summaries are fitted once with a count weight, which is
what makes the fit on tens of thousands of customers take milliseconds.

References: Fader, Hardie & Lee (2005), "Counting your customers the easy way";
Fader & Hardie (2013), "The Gamma-Gamma model of monetary value".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

FloatArray = NDArray[np.float64]


class FitError(ValueError):
    """The data cannot support a fit (too few customers or no repeat purchases)."""


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float

    def p_alive(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """P(the customer has not dropped out) given their history."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        log_term = (np.log(self.a) - np.log(np.maximum(self.b + x - 1, 1e-12))
                    + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x)))
        out = np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_term, 700))), 1.0)
        return np.asarray(out, dtype=np.float64)

    def expected_purchases(self, t: float, x: FloatArray, t_x: FloatArray,
                           T: FloatArray) -> FloatArray:
        """Expected number of purchases in the next ``t`` time units."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        first = (a + b + x - 1) / (a - 1)
        second = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        denom_log = (np.log(a) - np.log(np.maximum(b + x - 1, 1e-12))
                     + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
        denom = 1 + np.where(x > 0, np.exp(np.minimum(denom_log, 700)), 0.0)
        return np.asarray(first * second / denom, dtype=np.float64)


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float
    log_likelihood: float

    def expected_spend(self, x: FloatArray, m: FloatArray) -> FloatArray:
        """Expected average transaction value; customers without repeats get the population mean."""
        x = np.asarray(x, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        population = self.p * self.gamma / (self.q - 1) if self.q > 1 else float(np.nan)
        cond = (self.gamma + m * x) * self.p / (self.p * x + self.q - 1)
        return np.asarray(np.where(x > 0, cond, population), dtype=np.float64)


def _compress(*cols: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Distinct rows of the columns and how often each occurs (a lexsort, then run lengths)."""
    arrays = [np.asarray(c, dtype=np.float64) for c in cols]
    order = np.lexsort(arrays[::-1])
    ordered = [a[order] for a in arrays]
    change = np.zeros(order.size, bool)
    change[0] = True
    for a in ordered:
        change[1:] |= a[1:] != a[:-1]
    starts = np.flatnonzero(change)
    counts = np.diff(np.r_[starts, order.size]).astype(np.float64)
    return [a[starts] for a in ordered], counts


def bgnbd_log_likelihood(params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray,
                         weights: FloatArray) -> float:
    """Total BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), vectorised."""
    return _BgNbdData(x, t_x, T, weights).log_likelihood(params)


class _BgNbdData:
    """Data prepared once for many likelihood evaluations.

    The gamma-function terms depend on the repeat count only, which takes few distinct
    values: they are evaluated per distinct count and gathered, so one evaluation costs a
    few vector logarithms over the customers.
    """

    def __init__(self, x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray) -> None:
        self.ux, self.inv = np.unique(x, return_inverse=True)
        self.x, self.t_x, self.T, self.w = x, t_x, T, w
        self.repeat = x > 0
        self.wsum = float(w.sum())

    def log_likelihood(self, params: FloatArray) -> float:
        r, alpha, a, b = (float(v) for v in params)
        lg = special.gammaln
        ux = self.ux
        by_x = lg(r + ux) - lg(r) + r * np.log(alpha) + lg(a + b) + lg(b + ux) - lg(b) \
            - lg(a + b + ux)
        with np.errstate(divide="ignore", invalid="ignore"):
            extra_x = np.where(ux > 0, np.log(a) - np.log(np.maximum(b + ux - 1, 1e-300)),
                               -np.inf)
        rx = r + self.x
        ln_a1 = -rx * np.log(alpha + self.T)
        ln_a2 = np.where(self.repeat, extra_x[self.inv] - rx * np.log(alpha + self.t_x),
                         -np.inf)
        ll = by_x[self.inv] + np.logaddexp(ln_a1, ln_a2)
        total: float = float((self.w * ll).sum())  # not np.dot: no BLAS thread pool
        return total

    def value_and_gradient(self, params: FloatArray) -> tuple[float, FloatArray]:
        """Log-likelihood and its gradient in (r, alpha, a, b), analytically (digamma)."""
        r, alpha, a, b = (float(v) for v in params)
        lg, dg = special.gammaln, special.digamma
        ux, inv, x, w = self.ux, self.inv, self.x, self.w
        rx = r + x
        log_at, log_atx = np.log(alpha + self.T), np.log(alpha + self.t_x)
        bx1 = np.maximum(b + ux - 1, 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            extra_x = np.where(ux > 0, np.log(a) - np.log(bx1), -np.inf)
        ln_a1 = -rx * log_at
        ln_a2 = np.where(self.repeat, extra_x[inv] - rx * log_atx, -np.inf)
        by_x = lg(r + ux) - lg(r) + r * np.log(alpha) + lg(a + b) + lg(b + ux) - lg(b) \
            - lg(a + b + ux)
        value = float((w * (by_x[inv] + np.logaddexp(ln_a1, ln_a2))).sum())
        w2 = np.where(self.repeat, special.expit(ln_a2 - ln_a1), 0.0)  # share of the 2nd term
        w1 = 1.0 - w2
        d_r = (dg(r + ux) - dg(r))[inv] + np.log(alpha) - w1 * log_at - w2 * log_atx
        d_alpha = r / alpha - w1 * rx / (alpha + self.T) - w2 * rx / (alpha + self.t_x)
        d_a = (dg(a + b) - dg(a + b + ux))[inv] + w2 / a
        d_b = (dg(a + b) + dg(b + ux) - dg(b) - dg(a + b + ux))[inv] \
            - w2 / np.maximum(b + x - 1, 1e-300)
        grad = np.array([(w * d).sum() for d in (d_r, d_alpha, d_a, d_b)])
        return value, grad


def fit_bgnbd(x: FloatArray, t_x: FloatArray, T: FloatArray) -> BgNbd:
    """Maximum-likelihood BG/NBD parameters (optimised on log-parameters, L-BFGS-B)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 10 or not np.any(x > 0):
        raise FitError("BG/NBD needs at least 10 customers and some repeat purchases")
    (ux, ut, uT), w = _compress(x, t_x, T)
    prepared = _BgNbdData(ux, ut, uT, w)

    def nll(logp: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(logp)
        value, grad = prepared.value_and_gradient(params)
        # Optimised on log-parameters: d/d(log p) = p · d/dp.
        return -value / prepared.wsum, -grad * params / prepared.wsum

    # BFGS rather than L-BFGS-B: with four parameters the quasi-Newton update is trivial,
    # and scipy's L-BFGS-B routine goes through a BLAS thread pool that stalls on a busy host.
    best = optimize.minimize(nll, np.zeros(4), jac=True, method="BFGS",
                             options={"gtol": 1e-7, "maxiter": 500})
    if not np.isfinite(best.fun) or not best.success:  # a second, data-driven start
        alt = optimize.minimize(nll, np.log([0.5, float(np.mean(T)) or 1.0, 1.0, 2.0]),
                                jac=True, method="BFGS", options={"gtol": 1e-7})
        best = alt if alt.fun < best.fun else best
    r, alpha, a, b = np.exp(best.x)
    return BgNbd(float(r), float(alpha), float(a), float(b), float(-best.fun * prepared.wsum))


@dataclass(frozen=True)
class ParetoNbd:
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchases at a gamma(r, alpha)
    rate while alive, exponential lifetimes at a gamma(s, beta) dropout rate."""

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float

    def _parts(self, x: FloatArray, t_x: FloatArray, T: FloatArray
               ) -> tuple[FloatArray, FloatArray]:
        """Per customer: log-likelihood and its "alive at T" term."""
        params = np.array([self.r, self.alpha, self.s, self.beta])
        ll = pareto_nbd_individual_ll(params, x, t_x, T)
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        alive = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
                 + s * np.log(beta) - (r + x) * np.log(alpha + T) - s * np.log(beta + T))
        return ll, alive

    def p_alive(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """P(the customer has not dropped out) given their history (Fader & Hardie 2005,
        "A note on deriving the Pareto/NBD model", eq. 36)."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        ll, alive = self._parts(x, t_x, T)
        return np.asarray(np.exp(np.minimum(alive - ll, 0.0)), dtype=np.float64)

    def expected_purchases(self, t: float, x: FloatArray, t_x: FloatArray,
                           T: FloatArray) -> FloatArray:
        """Expected number of purchases in the next ``t`` time units (ibid., eq. 41)."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        ll, alive = self._parts(x, t_x, T)
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        rate = np.log(r + x) + np.log(beta + T) - np.log(alpha + T)
        if abs(s - 1.0) < 1e-9:  # the limit s → 1
            horizon = np.log(np.log((beta + T + t) / (beta + T)))
        else:
            horizon = np.log((1 - ((beta + T) / (beta + T + t)) ** (s - 1)) / (s - 1))
        return np.asarray(np.exp(alive + rate + horizon - ll), dtype=np.float64)


def pareto_nbd_individual_ll(params: FloatArray, x: FloatArray, t_x: FloatArray,
                             T: FloatArray) -> FloatArray:
    """Pareto/NBD log-likelihood per (x, t_x, T) (Fader & Hardie 2005 note, eqs. 18-20)."""
    r, alpha, s, beta = (float(v) for v in params)
    rsx = r + s + x
    b_arg: FloatArray | float
    if alpha >= beta:
        big, small_gap, b_arg = alpha, alpha - beta, s + 1.0
    else:
        big, small_gap, b_arg = beta, beta - alpha, r + x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q1, q2 = big + t_x, big + T
        la = np.log(special.hyp2f1(rsx, b_arg, rsx + 1.0, small_gap / q1)) - rsx * np.log(q1)
        lb = np.log(special.hyp2f1(rsx, b_arg, rsx + 1.0, small_gap / q2)) - rsx * np.log(q2)
        # A0 = exp(la) - exp(lb) >= 0 (t_x <= T); zero when the last purchase is at T.
        log_a0 = la + np.log1p(-np.exp(np.minimum(lb - la, 0.0)))
        a1 = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
              + s * np.log(beta))
        a2 = np.logaddexp(-(r + x) * np.log(alpha + T) - s * np.log(beta + T),
                          np.log(s) + log_a0 - np.log(rsx))
    return np.asarray(a1 + a2, dtype=np.float64)


def fit_pareto_nbd(x: FloatArray, t_x: FloatArray, T: FloatArray) -> ParetoNbd:
    """Maximum-likelihood Pareto/NBD parameters (BFGS on log-parameters, numerical gradient,
    over distinct (x, t_x, T) histories)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 10 or not np.any(x > 0):
        raise FitError("Pareto/NBD needs at least 10 customers and some repeat purchases")
    (ux, ut, uT), w = _compress(x, t_x, T)
    total = float(w.sum())

    def nll(logp: FloatArray) -> float:
        if np.any(np.abs(logp) > 30):
            return 1e10
        ll = pareto_nbd_individual_ll(np.exp(logp), ux, ut, uT)
        value = -float((w * ll).sum()) / total
        return value if np.isfinite(value) else 1e10

    best = optimize.minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-8})
    alt = optimize.minimize(nll, np.log([0.5, float(np.mean(T)) or 1.0, 0.5, float(
        np.mean(T)) or 1.0]), method="BFGS", options={"gtol": 1e-8})
    best = alt if alt.fun < best.fun else best
    # Polish with Nelder-Mead: the likelihood surface is flat along (s, beta).
    best = optimize.minimize(nll, best.x, method="Nelder-Mead",
                             options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000})
    r, alpha, s, beta = np.exp(best.x)
    return ParetoNbd(float(r), float(alpha), float(s), float(beta), float(-best.fun * total))


def gamma_gamma_log_likelihood(params: FloatArray, x: FloatArray, m: FloatArray,
                               weights: FloatArray,
                               distinct: tuple[FloatArray, NDArray[np.intp]] | None = None
                               ) -> float:
    """Gamma-Gamma log-likelihood of repeat buyers' mean spends (Fader & Hardie 2013)."""
    p, q, g = params
    lg = special.gammaln
    ux, inv = distinct or np.unique(x, return_inverse=True)
    by_x = (lg(p * ux + q) - lg(p * ux) - lg(q) + q * np.log(g) + p * ux * np.log(ux))[inv]
    ll = by_x + (p * x - 1) * np.log(m) - (p * x + q) * np.log(g + m * x)
    total: float = float((weights * ll).sum())
    return total


def _gamma_gamma_gradient(params: FloatArray, x: FloatArray, m: FloatArray,
                          weights: FloatArray, distinct: tuple[FloatArray, NDArray[np.intp]]
                          ) -> FloatArray:
    p, q, g = params
    dg = special.digamma
    ux, inv = distinct
    psi_pxq, psi_px = dg(p * ux + q)[inv], dg(p * ux)[inv]
    log_gmx = np.log(g + m * x)
    d_p = x * (psi_pxq - psi_px + np.log(m * x) - log_gmx)
    d_q = psi_pxq - dg(q) + np.log(g) - log_gmx
    d_g = q / g - (p * x + q) / (g + m * x)
    return np.array([(weights * d).sum() for d in (d_p, d_q, d_g)])


def fit_gamma_gamma(x: FloatArray, m: FloatArray) -> GammaGamma:
    """Gamma-Gamma parameters from repeat buyers' purchase counts and mean spend."""
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    keep = (x > 0) & (m > 0)
    if keep.sum() < 10:
        raise FitError("Gamma-Gamma needs at least 10 repeat buyers with positive spend")
    (ux, um), w = _compress(x[keep], m[keep])

    total = float(w.sum())
    distinct = np.unique(ux, return_inverse=True)

    def nll(logp: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(logp)
        value = gamma_gamma_log_likelihood(params, ux, um, w, distinct)
        grad = _gamma_gamma_gradient(params, ux, um, w, distinct)
        return -value / total, -grad * params / total

    res = optimize.minimize(nll, np.zeros(3), jac=True, method="BFGS",
                            options={"gtol": 1e-7, "maxiter": 500})
    p, q, g = np.exp(res.x)
    return GammaGamma(float(p), float(q), float(g), float(-res.fun * w.sum()))


def churn_band(p_alive: float) -> str:
    """The churn-risk band shown to staff and written as a computed trait."""
    if p_alive < 0.3:
        return "high"
    if p_alive < 0.6:
        return "medium"
    return "low"


def summarise(customer: NDArray[Any], day: FloatArray, amount: FloatArray, *,
              end_day: float, unit_days: float = 7.0) -> dict[str, NDArray[Any]]:
    """(x, t_x, T, mean repeat spend) per customer from transactions (one per day counts once).

    ``day`` is days since any epoch, ``end_day`` the end of calibration on the same scale;
    results are in units of ``unit_days`` (weeks by default, as in the published CDNOW work).
    Like the published CDNOW analysis, purchases on the same day are one transaction and the
    first purchase is excluded from the spend average (it differs systematically).
    """
    order = np.lexsort((day, customer))
    c, t, v = customer[order], np.floor(day[order]), amount[order]
    key_change = np.r_[True, (c[1:] != c[:-1]) | (t[1:] != t[:-1])]
    day_idx = np.cumsum(key_change) - 1
    day_c, day_t = c[key_change], t[key_change]
    day_v = np.bincount(day_idx, weights=v)
    first = np.r_[True, day_c[1:] != day_c[:-1]]
    cust_idx = np.cumsum(first) - 1
    ids = day_c[first]
    n = np.bincount(cust_idx)
    t0 = day_t[first]
    t_last = np.maximum.reduceat(day_t, np.flatnonzero(first))
    repeat_spend = np.bincount(cust_idx, weights=np.where(first, 0.0, day_v))
    x = (n - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(x > 0, repeat_spend / np.maximum(x, 1), 0.0)
    return {"customer": ids, "x": x, "t_x": (t_last - t0) / unit_days,
            "T": (np.floor(end_day) - t0) / unit_days, "m": m}
