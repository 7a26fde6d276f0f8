"""Log-normal accelerated-failure-time (AFT) fit of time to a target loss, vectorised over many data sets.

Model (log time y):
  baseline seed i   y_b,i ~ N(mu_b, sigma_b^2), always observed (each baseline seed's target is its own loss)
  variant seed j    y_v,j ~ N(mu_v, sigma_v^2), right-censored at c_j = log(its last eval) when it never reaches
                    the target: it contributes log P(y > c_j) = log Phi(-(c_j - mu_v) / sigma_v)
  acceleration      a = mu_b - mu_v: the variant "reaches the target exp(a) times sooner"

Each arm has its own scale: with `target: final` every baseline seed reaches its own final loss at its last eval,
so the baseline's log times barely vary while the variant's carry all the target noise; one shared sigma would
pool a near-zero baseline spread into the variant's and be overconfident when seed counts differ.

Interval. The variant's location is fitted by maximum likelihood with sigma_v profiled out; the profile
likelihood-ratio statistic LR(m) is turned into a t statistic by the identity that holds exactly for uncensored
normal samples, LR = n log(1 + t^2 / (n - 1)), so without censoring the interval IS the t interval and with 2-3
seeds it keeps the t's small-sample width (a chi-square profile interval would be far too narrow at n = 2). The
bound on mu_v is combined with the baseline mean's standard error s_b / sqrt(n_b) as in Welch's test
(Welch-Satterthwaite degrees of freedom); without censoring the whole interval is exactly Welch's t interval on
log times. With censoring the profile bound widens on the slow side: a censored seed lowers the estimate and the
low end, it does not veto anything. Calibration with censoring: tests/analysis/test_speedup_calibration.py,
benchmarks/calibrate_speedup.py.

Numerics: nested root finding (Newton on log sigma inside, regula falsi on the location outside) on arrays of shape (data sets, roots,
seeds), a fixed number of steps, so thousands of simulated data sets fit in one call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

LEVEL = 0.95
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_INNER, _OUTER = 30, 60  # most steps: Newton on log sigma, regula falsi on the location (both stop early)


@dataclass(frozen=True)
class AftFit:
    """Per data set (arrays of shape (K,)): log acceleration and its interval, one-sided p of a <= bar."""
    log_acc: np.ndarray
    low: np.ndarray  # low end of the LEVEL interval on log acceleration (-inf: unbounded)
    high: np.ndarray
    p_one_sided: np.ndarray  # H0: log acceleration <= log_bar (nan when no bar was given)
    sigma_v: np.ndarray  # the variant's log-time sd (MLE x sqrt(n / (n - 1)), the unbiased scale)
    n_censored: np.ndarray
    bounded: np.ndarray  # True: no likelihood maximum (no variant seed reached the target, or one did and every
    # censored one stopped before it): log_acc is then an upper bound and the low end is -inf


def _terms(m, s, x, cens):
    """Per-seed log-likelihood (constants dropped), its first and second derivative in log sigma, and its
    derivative in the location; m, s: (K, M), x: (K, 1, n)."""
    sig = np.exp(s)[..., None]
    z = (x - m[..., None]) / sig
    lsf = special.log_ndtr(-z)
    ll = np.where(cens, lsf, -s[..., None] - 0.5 * z * z)
    mills = np.exp(-0.5 * z * z - _LOG_SQRT_2PI - lsf)  # phi(z) / Phi(-z), the inverse Mills ratio
    # d/d log sigma (dz/d log sigma = -z): observed z^2 - 1; censored z * mills
    g = np.where(cens, z * mills, z * z - 1.0)
    h = np.where(cens, -z * (mills + z * mills * (mills - z)), -2.0 * z * z)
    dm = np.where(cens, mills, z) / sig  # d/d location
    return ll, g, h, dm


def _profile(m, x, cens, scale):
    """max over sigma of the log-likelihood at location m (K, M), and its derivative in m (the envelope theorem:
    the partial derivative at the profiled sigma). Safeguarded Newton on the log-sigma score inside a bracket."""
    lo = np.broadcast_to(np.log(scale)[:, None] - 12.0, m.shape).copy()
    hi = lo + 26.0
    s = np.clip(0.5 * np.log(np.mean((x - m[..., None]) ** 2, -1) + 1e-300), lo, hi)
    for _ in range(_INNER):
        _, g, h, _ = _terms(m, s, x, cens)
        g, h = g.sum(-1), h.sum(-1)
        up = g > 0  # score still rising: the maximum is at a larger sigma
        lo, hi = np.where(up, s, lo), np.where(up, hi, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = s - g / h
        ok = (h < 0) & (step >= lo) & (step <= hi)
        new = np.where(ok, step, 0.5 * (lo + hi))
        done = np.all(np.abs(new - s) < 1e-11)
        s = new
        if done:
            break
    ll, _, _, dm = _terms(m, s, x, cens)
    return ll.sum(-1), s, dm.sum(-1)


def _mle(x, cens, scale):
    """Joint maximum likelihood of (location, log sigma) for rows of x (K, n): damped Newton from the uncensored
    mean and sd, each step halved until the likelihood rises (8 step lengths tried at once)."""
    m = x.mean(1)
    lo_m, hi_m = x.min(1) - 30 * scale, x.max(1) + 1e4 * scale
    lo_s = np.log(scale) - 12.0
    s = np.log(np.maximum(x.std(1), scale * 1e-3))
    x3, c3 = x[:, None, :], cens[:, None, :]
    lengths = 0.5 ** np.arange(8)
    for _ in range(_OUTER):
        sig = np.exp(s)[:, None]
        z = (x - m[:, None]) / sig
        lsf = special.log_ndtr(-z)
        lam = np.exp(-0.5 * z * z - _LOG_SQRT_2PI - lsf)
        gm = (np.where(cens, lam, z) / sig).sum(1)
        gs = np.where(cens, z * lam, z * z - 1).sum(1)
        hmm = (np.where(cens, -lam * (lam - z), -1.0) / sig ** 2).sum(1)
        hms = (np.where(cens, -(z * lam * (lam - z) + lam), -2 * z) / sig).sum(1)
        hss = np.where(cens, -z * (lam + z * lam * (lam - z)), -2 * z * z).sum(1)
        det = hmm * hss - hms ** 2
        newton = (hmm < 0) & (det > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dm = np.where(newton, -(hss * gm - hms * gs) / det, gm * sig[:, 0] ** 2 / x.shape[1])
            ds = np.where(newton, -(hmm * gs - hms * gm) / det, gs / (2 * x.shape[1]))
        ll0, _, _, _ = _terms(m[:, None], s[:, None], x3, c3)
        # trial points kept inside a box no maximum leaves (sigma within e^-12 .. e^14 of the data's span)
        tm = np.clip(m[:, None] + lengths * np.nan_to_num(dm)[:, None], lo_m[:, None], hi_m[:, None])
        ts = np.clip(s[:, None] + lengths * np.nan_to_num(ds)[:, None], lo_s[:, None], lo_s[:, None] + 26.0)
        with np.errstate(over="ignore", invalid="ignore"):
            ll, _, _, _ = _terms(tm, ts, x3, c3)
        ll = np.where(np.isfinite(ll.sum(-1)), ll.sum(-1), -np.inf)
        ok = ll >= ll0.sum(-1) - 1e-12 * np.abs(ll0.sum(-1))
        rows, pick, moved = np.arange(len(m)), ok.argmax(1), ok.any(1)  # no length rises: at the maximum
        new_m, new_s = np.where(moved, tm[rows, pick], m), np.where(moved, ts[rows, pick], s)
        done = np.all((np.abs(new_m - m) < 1e-11 * scale) & (np.abs(new_s - s) < 1e-11))
        m, s = new_m, new_s
        if done:
            break
    return m


def _illinois(f, lo, hi, tol):
    """Root of the increasing function f between lo and hi (arrays, f(lo) < 0 < f(hi) assumed; rows where that
    fails end at an end), by the Illinois variant of regula falsi: superlinear, and never leaves the bracket."""
    flo, fhi = f(lo), f(hi)
    side = np.zeros(lo.shape, int)
    for _ in range(_OUTER):
        with np.errstate(divide="ignore", invalid="ignore"):
            x = hi - fhi * (hi - lo) / (fhi - flo)
        x = np.where(np.isfinite(x) & (x > lo) & (x < hi), x, 0.5 * (lo + hi))
        fx = f(x)
        pos = fx > 0
        # Illinois: halve the kept end's value when the same end is kept twice, so convergence stays superlinear
        flo = np.where(pos & (side == 1), 0.5 * flo, flo)
        fhi = np.where(~pos & (side == -1), 0.5 * fhi, fhi)
        lo, flo = np.where(pos, lo, x), np.where(pos, flo, fx)
        hi, fhi = np.where(pos, x, hi), np.where(pos, fx, fhi)
        side = np.where(pos, 1, -1)
        if np.all((hi - lo < tol) | (np.abs(fx) < 1e-12)):
            break
    return np.where(np.abs(flo) < np.abs(fhi), lo, hi)


def _variant_bounds(x, cens, q):
    """Censored-normal MLE of the location and its profile-t bounds (T(m) = -q, +q) for each row of x (K, n)."""
    k, n = x.shape
    x3, c3 = x[:, None, :], cens[:, None, :]
    span = x.max(1) - x.min(1)
    scale = np.maximum(span, 1e-6 * np.maximum(1.0, np.abs(x).max(1)))
    mu = _mle(x, cens, scale)
    lmax, s_hat, _ = _profile(mu[:, None], x3, c3, scale)

    def log_t(u):
        """log |T| at mu -+ exp(u) (columns: below, above): close to linear in u, so the roots come fast."""
        m = mu[:, None] + np.array([-1.0, 1.0]) * np.exp(u)
        ll, _, _ = _profile(m, x3, c3, scale)
        lr = np.maximum(2 * (lmax - ll), 1e-300)
        return 0.5 * np.log((n - 1) * np.expm1(np.minimum(lr / n, 700.0))) - math.log(q)

    lo = np.repeat(np.log(scale * 1e-6)[:, None], 2, 1)
    hi = np.repeat(np.log(scale * 1e4)[:, None], 2, 1)
    u = _illinois(log_t, lo, hi, 1e-9)
    never = log_t(hi) < 0  # |T| never reaches q: that side is unbounded
    dist = np.where(never, np.inf, np.exp(u))
    bounds = np.stack([mu - dist[:, 0], mu + dist[:, 1]], 1)
    return mu, bounds, np.exp(s_hat[:, 0]) * math.sqrt(n / (n - 1))


def _closed_form(x, q):
    """Uncensored rows: mean, t bounds and sd."""
    n = x.shape[1]
    mu, sd = x.mean(1), x.std(1, ddof=1)
    h = q * sd / math.sqrt(n)
    return mu, np.stack([mu - h, mu + h], 1), sd


def _unbounded_likelihood(x, cens):
    """Rows whose likelihood has no maximum: one distinct observed time and every censoring point at or below it
    (sigma -> 0 there gives infinite likelihood), or no observed time at all."""
    omax = np.where(cens, -np.inf, x).max(1)
    one = omax == np.where(cens, np.inf, x).min(1)
    low_cens = np.all(~cens | (x <= omax[:, None]), 1)
    return ((~cens).sum(1) == 0) | (one & low_cens & cens.any(1))


def fit(yb: np.ndarray, yv: np.ndarray, cens: np.ndarray, log_bar: float | None = None,
        shared_var: np.ndarray | float = 0.0) -> AftFit:
    """Fit K data sets at once: yb (K, n_b) baseline log times, yv (K, n_v) variant log times (for a censored seed
    its log censoring point), cens (K, n_v) True where censored. Needs n_b >= 1 and n_v >= 2.

    shared_var (K,): variance of the variant's mean log time that its seeds share and so cannot show, counted
    with the baseline's (n_b - 1 df): the variant seeds timed to the mean baseline target all move with that
    mean's noise (speedup.observe)."""
    yb, yv, cens = np.asarray(yb, float), np.asarray(yv, float), np.asarray(cens, bool)
    k, nb = yb.shape
    nv = yv.shape[1]
    q = float(special.stdtrit(nv - 1, 0.5 + LEVEL / 2))
    mu_v, bounds, sd_v = _closed_form(yv, q)
    # no likelihood maximum: treating censoring points as times gives an upper bound on the speedup (its high
    # end stands), but nothing bounds it from below
    bounded = _unbounded_likelihood(yv, cens)
    num = cens.any(1) & ~bounded
    if num.any():
        m, b, s = _variant_bounds(yv[num], cens[num], q)
        mu_v[num], bounds[num], sd_v[num] = m, b, s
    bounds[bounded, 1] = np.inf
    mu_b = yb.mean(1)
    se_b2 = (yb.var(1, ddof=1) / nb if nb > 1 else np.zeros(k)) + shared_var
    est = mu_b - mu_v
    # the variant's bound as a standard error on each side, then Welch's combination with the baseline mean
    se_up = (bounds[:, 1] - mu_v) / q  # slow side of the variant: the low end of the acceleration
    se_dn = (mu_v - bounds[:, 0]) / q

    def welch(se_v):
        se2 = se_b2 + se_v ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            df = se2 ** 2 / (np.where(nb > 1, se_b2 ** 2 / max(nb - 1, 1), 0.0) + se_v ** 4 / (nv - 1))
        df = np.where(np.isfinite(df), df, nv - 1)
        return np.sqrt(se2), df

    se_l, df_l = welch(se_up)
    se_h, df_h = welch(se_dn)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(np.isinf(se_up), -np.inf, est - special.stdtrit(df_l, 0.5 + LEVEL / 2) * se_l)
        high = np.where(np.isinf(se_dn), np.inf, est + special.stdtrit(df_h, 0.5 + LEVEL / 2) * se_h)
        if log_bar is None:
            p = np.full(k, np.nan)
        else:
            zstat = (est - log_bar) / se_l
            p = np.where(se_l > 0, special.stdtr(df_l, -zstat), np.where(est >= log_bar - 1e-9, 0.0, 1.0))
            p = np.where(np.isinf(se_up), 1.0, p)
    return AftFit(est, low, high, p, sd_v, cens.sum(1), bounded)
