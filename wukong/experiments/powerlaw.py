r"""Power-law fits of quality against compute: ``L(C) = L∞ + A · C^(−α)``.

``C`` is MFLOP/example (or total training FLOPs), ``L`` a LogLoss (or an excess LogLoss over the
oracle). ``L∞`` is the loss the family approaches with unlimited compute at this data budget, ``α``
how fast it gets there. The paper's form, the relative LogLoss gain per 4× compute,
``(L(C) − L(4C)) / L(C)``, is reported at the largest measured ``C``.

Fitting: with ``C₀`` the geometric mean of the measured ``C`` and ``u = C / C₀``, the model is linear
in ``(L∞, A')`` for a fixed ``α`` (``A = A' · C₀^α``), so a grid over ``α`` finds the global least-squares
optimum with ``A' > 0`` and ``L∞ ≥ 0``, which :func:`scipy.optimize.curve_fit` then refines.

Uncertainty: every seed's result is one observation, so the scatter between seeds enters the
residual variance; the standard deviations are the least-squares standard errors (the covariance of
``curve_fit`` scaled by that variance; ``A``'s by the delta method through ``A = A' · C₀^α``). On
simulated data with known parameters, ±2 standard errors cover the truth about 95% of the time. A law
counts as *identified* only where ``α`` lies more than two standard errors above 0
(:attr:`PowerLaw.identified`); a least-squares curve exists for any decreasing points, a law does not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHAS = np.geomspace(1e-3, 4.0, 400)
GAIN_FACTOR = 4


@dataclass(frozen=True)
class PowerLaw:
    """A fitted ``floor + scale · C^(−exponent)`` and the standard deviation of each parameter."""

    floor: float
    scale: float
    exponent: float
    floor_std: float
    scale_std: float
    exponent_std: float
    points: int
    rmse: float
    uncertainty: str  # how the standard deviations were obtained
    decreasing: bool = True  # False: the data do not decrease with compute (no power law fitted)

    def __call__(self, c):
        return self.floor + self.scale * np.asarray(c, dtype=float) ** (-self.exponent)

    def gain(self, c: float, factor: float = GAIN_FACTOR) -> float:
        """Relative decrease of the loss when compute grows ``factor`` times from ``c``."""
        at = float(self(c))
        return (at - float(self(c * factor))) / at if at else math.nan

    @property
    def identified(self) -> bool | None:
        """Whether the data show a power law: α more than two standard errors above 0. None: no
        standard error (as many points as parameters). A fit with α within 2σ of 0 (a flat curve, or
        flat then a step) draws a curve through the points but is no evidence of a law."""
        if not self.decreasing:
            return False
        if not math.isfinite(self.exponent_std):
            return None
        return self.exponent > 2 * self.exponent_std

    def formula(self, symbol: str = "C") -> str:
        if not self.decreasing:
            return f"{self.floor:.4f} (no decrease)"
        return f"{self.floor:.4f} + {self.scale:.3g}·{symbol}^−{self.exponent:.3f}"


def _solve(u: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """The least-squares ``(floor, scale', alpha)`` over the α grid, with scale' > 0 and floor >= 0."""
    best, best_sse = None, math.inf
    for alpha in ALPHAS:
        column = u**-alpha
        design = np.stack([np.ones_like(u), column], axis=1)
        (floor, scale), *_ = np.linalg.lstsq(design, y, rcond=None)
        if floor < 0:  # the loss cannot go below 0: refit with the floor at 0
            floor, scale = 0.0, float(column @ y / (column @ column))
        if scale <= 0:
            continue
        sse = float(np.sum((floor + scale * column - y) ** 2))
        if sse < best_sse:
            best, best_sse = (float(floor), float(scale), float(alpha)), sse
    return best


def _fit_normalised(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(floor, scale', alpha)`` and their covariance (None when it cannot be estimated)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    start = _solve(u, y)
    if start is None:
        return None
    try:
        with warnings.catch_warnings():  # too few points for a covariance: handled below
            warnings.simplefilter("ignore", OptimizeWarning)
            params, covariance = curve_fit(
                lambda u, floor, scale, alpha: floor + scale * u**-alpha,
                u,
                y,
                p0=start,
                bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, 10.0]),
                maxfev=20_000,
            )
    except (RuntimeError, ValueError):
        return np.array(start), None
    if not np.all(np.isfinite(covariance)) or len(y) <= 3:
        covariance = None
    return params, covariance


def fit_power_law(c: Sequence[float], loss: Sequence[float]) -> PowerLaw:
    """Fit ``loss = L∞ + A · c^(−α)`` to measured points (several per ``c`` when there are seeds).

    Raises:
        ValueError: fewer than 3 distinct ``c`` values, or non-positive ``c``.
    """
    x, y = np.asarray(c, dtype=float), np.asarray(loss, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    distinct = np.unique(x)
    if len(distinct) < 3:
        raise ValueError(f"a power law needs at least 3 distinct compute values, got {len(distinct)}")
    if distinct[0] <= 0:
        raise ValueError("compute values must be positive")
    c0 = float(np.exp(np.mean(np.log(distinct))))
    u = x / c0
    fitted = _fit_normalised(u, y)
    if fitted is None:
        mean = float(np.mean(y))
        rmse = float(np.sqrt(np.mean((y - mean) ** 2)))
        return PowerLaw(mean, 0.0, 0.0, math.nan, math.nan, math.nan, len(y), rmse, "none", decreasing=False)
    (floor, scale_n, alpha), covariance = fitted
    scale = scale_n * c0**alpha
    rmse = float(np.sqrt(np.mean((floor + scale_n * u**-alpha - y) ** 2)))
    if covariance is not None:
        var_floor, var_scale, var_alpha = np.diag(covariance)
        log_c0 = math.log(c0)
        var_a = c0 ** (2 * alpha) * (
            var_scale + (scale_n * log_c0) ** 2 * var_alpha + 2 * scale_n * log_c0 * covariance[1, 2]
        )
        stds, how = (math.sqrt(var_floor), math.sqrt(max(var_a, 0.0)), math.sqrt(var_alpha)), "least-squares"
    else:
        stds, how = (math.nan, math.nan, math.nan), "none (as many points as parameters)"
    return PowerLaw(float(floor), float(scale), float(alpha), *stds, len(y), rmse, how)
