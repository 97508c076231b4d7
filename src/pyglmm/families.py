"""Exponential families with canonical link: cumulant functions and response checks.

A family holds exactly its mathematics: the cumulant function :math:`c(\\eta)`, its
first two derivatives (mean and variance functions), the log-likelihood constant that
does not depend on the parameters, and the check of the response (docs/method.md).
All functions act elementwise on arrays of canonical parameters ``eta`` whose last
axis runs over observations; ``trials`` (binomial numbers of trials) broadcasts
against it.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from .errors import ArgumentError, ArgumentTypeError, DataError

FloatArray = NDArray[np.float64]

#: Largest canonical parameter used in the Poisson cumulant: exp(300) is finite and
#: so are its squares, so weights and moments never overflow; the affected samples
#: already have log-weights far below any competitor (docs/method.md).
POISSON_ETA_MAX = 300.0


class Family(ABC):
    """A one-parameter exponential family with canonical link.

    Attributes
    ----------
    name : str
        Family name as used by :func:`pyglmm.glmm` (``"bernoulli"``, ...).
    link : str
        Description of the canonical link, as printed in the summary.
    """

    name: ClassVar[str]
    link: ClassVar[str]

    @abstractmethod
    def loglik_terms(self, eta: FloatArray, y: FloatArray, trials: FloatArray) -> FloatArray:
        """Return :math:`y\\eta - c(\\eta)` elementwise, the parameter-dependent log density."""

    @abstractmethod
    def mean_variance(
        self, eta: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Return :math:`c'(\\eta)` and :math:`c''(\\eta)` elementwise."""

    @abstractmethod
    def cumulant(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        """Return :math:`c(\\eta)` elementwise."""

    def all_terms(
        self, eta: FloatArray, y: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Return log-density terms, means and variances in one pass.

        Subclasses override this to share the transcendental functions between the
        three outputs; it is the hot path of every objective evaluation.
        """
        mean, variance = self.mean_variance(eta, trials)
        return self.loglik_terms(eta, y, trials), mean, variance

    def variance_derivative(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        """Return the derivative of the variance function, ``c'''(eta)``, elementwise.

        It enters the gradient of the Laplace approximation (the curvature's
        log-determinant moves with the linear predictor). The built-in families give it
        in closed form; this default differentiates :meth:`variance` by central
        differences (relative error below about 1e-9 for the built-in families' variances).
        """
        step = 2e-6 * (1.0 + np.abs(eta))
        return (self.variance(eta + step, trials) - self.variance(eta - step, trials)) / (
            2.0 * step)

    def mean(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        """Return the mean :math:`c'(\\eta)`."""
        return self.mean_variance(eta, trials)[0]

    def variance(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        """Return the variance function :math:`c''(\\eta)`."""
        return self.mean_variance(eta, trials)[1]

    def loglik_constant(
        self, y: FloatArray, trials: FloatArray, weights: FloatArray | None = None
    ) -> float:
        """Return the part of the log-likelihood that does not depend on the parameters.

        With ``weights`` each observation's constant is multiplied by its weight.
        """
        return 0.0

    @abstractmethod
    def check_response(
        self,
        y: FloatArray,
        trials: FloatArray,
        name: str,
        labels: Sequence[Any] | None = None,
    ) -> None:
        """Raise :class:`~pyglmm.errors.DataError` if the response is invalid.

        Parameters
        ----------
        y : ndarray, shape (n,)
            The response (successes for the binomial family).
        trials : ndarray, shape (n,)
            Numbers of trials (ones for the families without trials).
        name : str
            How the response is named in messages (the column or ``cbind(...)``).
        labels : sequence, optional
            Index labels of the rows, used to point at the first offending row;
            positions are used without it.
        """

    def response_edges(
        self, y: FloatArray, trials: FloatArray
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Rows whose response sits at the lower or upper end of its support.

        Moving ``eta`` of a row at the lower end (``y = 0``) towards minus infinity,
        or of a row at the upper end (``y = trials``) towards plus infinity, never
        lowers its likelihood; rows at neither end pin ``eta`` down. This is what the
        check for separation of the fixed effects needs.

        Parameters
        ----------
        y, trials : ndarray, shape (n,)
            The response and numbers of trials.

        Returns
        -------
        lower, upper : ndarray of bool, shape (n,)
        """
        none = np.zeros(y.shape, dtype=bool)
        return none, none.copy()

    def degenerate_response(self, y: FloatArray, trials: FloatArray) -> str | None:
        """Describe a response that makes the fixed effects diverge, or return None.

        A response that sits at the edge of its range in every row (all 0 or all 1
        for the Bernoulli family, no successes or no failures at all for the binomial,
        all zero counts for the Poisson) has no finite maximum likelihood: the
        intercept direction keeps improving it.

        Parameters
        ----------
        y, trials : ndarray, shape (n,)
            The response and numbers of trials.

        Returns
        -------
        str or None
            A phrase such as ``"all 0"`` when the response is degenerate.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _where(bad: NDArray[np.intp], values: FloatArray, labels: Sequence[Any] | None) -> str:
    """``"first at row 'a': 2.5"``: where the first offending value is, and what it is."""
    first = int(bad[0])
    row = labels[first] if labels is not None and len(labels) > first else first
    return f"first at row {row!r}: {float(values[first])!r}"


def _check_finite(y: FloatArray, name: str, labels: Sequence[Any] | None) -> None:
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise DataError(
            f"response {name!r} has {bad.size} non-finite value(s) (inf or NaN; "
            f"{_where(bad, y, labels)}); remove or fix those rows"
        )


def _check_integer_valued(
    y: FloatArray, name: str, what: str, labels: Sequence[Any] | None
) -> None:
    bad = np.flatnonzero(y != np.round(y))
    if bad.size:
        raise DataError(
            f"{what} {name!r} must be integer-valued (whole numbers, stored as int or "
            f"float); {bad.size} value(s) are not ({_where(bad, y, labels)})"
        )


def _logistic_pieces(eta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return ``e = exp(-|eta|)``, ``log(1 + e)`` and the logistic mean, stably.

    The mean is ``1/2 + sign(eta) (1 - e) / (2 (1 + e))``, exact to rounding in
    absolute terms (which is what residuals ``y - mean`` need) and much cheaper than a
    masked ``where`` on large arrays.
    """
    e = np.exp(-np.abs(eta))
    inv = 1.0 / (1.0 + e)
    # log(1 + e) with e in (0, 1] loses nothing relevant here and is much faster than
    # log1p on some builds (numpy's log1p is not vectorised there: 86 ms against about
    # 10 ms for log(1 + e) on 3.6 million elements, measured).
    log_one_plus_e = -np.log(inv)
    half_tanh = (0.5 - 0.5 * e) * inv
    mean = 0.5 + np.copysign(half_tanh, eta)
    return e, log_one_plus_e, mean


def _logistic_variance(e: FloatArray) -> FloatArray:
    """``c''(eta) = e / (1 + e)^2`` with ``e = exp(-|eta|)``, free of cancellation."""
    inv = 1.0 / (1.0 + e)
    return e * inv * inv


def _logistic_variance_derivative(eta: FloatArray) -> FloatArray:
    """``c'''(eta) = mu (1 - mu) (1 - 2 mu)`` for the logistic mean ``mu``, written with
    ``e = exp(-|eta|)`` as ``-sign(eta) e (1 - e) / (1 + e)^3``, free of cancellation."""
    e = np.exp(-np.abs(eta))
    inv = 1.0 / (1.0 + e)
    return -np.sign(eta) * (e * inv * inv) * ((1.0 - e) * inv)


class Bernoulli(Family):
    """Bernoulli responses in {0, 1} with logit link: :math:`c(\\eta)=\\log(1+e^\\eta)`."""

    name = "bernoulli"
    link = "logit (log odds)"

    def cumulant(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        _, log_one_plus_e, _ = _logistic_pieces(eta)
        return np.maximum(eta, 0.0) + log_one_plus_e

    def loglik_terms(self, eta: FloatArray, y: FloatArray, trials: FloatArray) -> FloatArray:
        return y * eta - self.cumulant(eta, trials)

    def mean_variance(
        self, eta: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        e, _, mean = _logistic_pieces(eta)
        return mean, _logistic_variance(e)

    def variance_derivative(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        return _logistic_variance_derivative(eta)

    def all_terms(
        self, eta: FloatArray, y: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        e, log_one_plus_e, mean = _logistic_pieces(eta)
        terms = y * eta - np.maximum(eta, 0.0) - log_one_plus_e
        return terms, mean, _logistic_variance(e)

    def check_response(
        self,
        y: FloatArray,
        trials: FloatArray,
        name: str,
        labels: Sequence[Any] | None = None,
    ) -> None:
        _check_finite(y, name, labels)
        bad = np.flatnonzero((y != 0.0) & (y != 1.0))
        if bad.size:
            raise DataError(
                f"bernoulli response {name!r} must be 0 or 1; {bad.size} value(s) are not "
                f"({_where(bad, y, labels)}). For counts out of several trials use "
                "family='binomial' with 'cbind(successes, failures) ~ ...'."
            )

    def response_edges(
        self, y: FloatArray, trials: FloatArray
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        return y == 0.0, y == 1.0

    def degenerate_response(self, y: FloatArray, trials: FloatArray) -> str | None:
        if np.all(y == 0.0):
            return "all 0"
        if np.all(y == 1.0):
            return "all 1"
        return None


class Binomial(Family):
    """Binomial successes out of ``trials`` with logit link."""

    name = "binomial"
    link = "logit (log odds)"

    def cumulant(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        _, log_one_plus_e, _ = _logistic_pieces(eta)
        return trials * (np.maximum(eta, 0.0) + log_one_plus_e)

    def loglik_terms(self, eta: FloatArray, y: FloatArray, trials: FloatArray) -> FloatArray:
        return y * eta - self.cumulant(eta, trials)

    def mean_variance(
        self, eta: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        e, _, mean = _logistic_pieces(eta)
        return trials * mean, trials * _logistic_variance(e)

    def variance_derivative(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        return trials * _logistic_variance_derivative(eta)

    def all_terms(
        self, eta: FloatArray, y: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        e, log_one_plus_e, mean = _logistic_pieces(eta)
        terms = y * eta - trials * (np.maximum(eta, 0.0) + log_one_plus_e)
        variance = trials * _logistic_variance(e)
        return terms, trials * mean, variance

    def loglik_constant(
        self, y: FloatArray, trials: FloatArray, weights: FloatArray | None = None
    ) -> float:
        log_choose = gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)
        return float(np.sum(log_choose if weights is None else weights * log_choose))

    def check_response(
        self,
        y: FloatArray,
        trials: FloatArray,
        name: str,
        labels: Sequence[Any] | None = None,
    ) -> None:
        _check_finite(y, name, labels)
        _check_finite(trials, name, labels)
        failures = trials - y
        for values, what in ((y, "successes"), (failures, "failures")):
            negative = np.flatnonzero(values < 0)
            if negative.size:
                raise DataError(
                    f"binomial {what} in {name!r} must be non-negative counts; "
                    f"{negative.size} value(s) are negative ({_where(negative, values, labels)})"
                )
            _check_integer_valued(values, name, f"binomial {what} in", labels)

    def response_edges(
        self, y: FloatArray, trials: FloatArray
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        return y == 0.0, y == trials

    def degenerate_response(self, y: FloatArray, trials: FloatArray) -> str | None:
        if np.all(y == 0.0):
            return "no successes in any row"
        if np.all(y == trials):
            return "no failures in any row"
        return None


class Poisson(Family):
    """Poisson counts with log link: :math:`c(\\eta)=e^\\eta`.

    The canonical parameter is capped at :data:`POISSON_ETA_MAX` so that no
    evaluation overflows.
    """

    name = "poisson"
    link = "log"

    def cumulant(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        return np.exp(np.minimum(eta, POISSON_ETA_MAX))

    def loglik_terms(self, eta: FloatArray, y: FloatArray, trials: FloatArray) -> FloatArray:
        capped = np.minimum(eta, POISSON_ETA_MAX)
        return y * capped - np.exp(capped)

    def mean_variance(
        self, eta: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        mean = np.exp(np.minimum(eta, POISSON_ETA_MAX))
        return mean, mean

    def variance_derivative(self, eta: FloatArray, trials: FloatArray) -> FloatArray:
        # the capped variance is constant beyond the cap
        return np.where(eta < POISSON_ETA_MAX, np.exp(np.minimum(eta, POISSON_ETA_MAX)), 0.0)

    def all_terms(
        self, eta: FloatArray, y: FloatArray, trials: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        capped = np.minimum(eta, POISSON_ETA_MAX)
        mean = np.exp(capped)
        return y * capped - mean, mean, mean

    def loglik_constant(
        self, y: FloatArray, trials: FloatArray, weights: FloatArray | None = None
    ) -> float:
        log_factorial = gammaln(y + 1.0)
        return float(-np.sum(log_factorial if weights is None else weights * log_factorial))

    def check_response(
        self,
        y: FloatArray,
        trials: FloatArray,
        name: str,
        labels: Sequence[Any] | None = None,
    ) -> None:
        _check_finite(y, name, labels)
        negative = np.flatnonzero(y < 0)
        if negative.size:
            raise DataError(
                f"poisson response {name!r} must be non-negative counts; {negative.size} "
                f"value(s) are negative ({_where(negative, y, labels)})"
            )
        _check_integer_valued(y, name, "poisson response", labels)

    def response_edges(
        self, y: FloatArray, trials: FloatArray
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        return y == 0.0, np.zeros(y.shape, dtype=bool)

    def degenerate_response(self, y: FloatArray, trials: FloatArray) -> str | None:
        if np.all(y == 0.0):
            return "all 0"
        return None


_FAMILIES: dict[str, type[Family]] = {
    "bernoulli": Bernoulli,
    "binomial": Binomial,
    "poisson": Poisson,
}


def get_family(family: str | Family | type[Family]) -> Family:
    """Return a :class:`Family` instance from a name, class or instance.

    Parameters
    ----------
    family : str, Family or Family subclass
        ``"bernoulli"``, ``"binomial"`` or ``"poisson"`` (case-insensitive; R's
        ``"bernoulli.glmm"`` spellings are accepted too), or a family object.

    Returns
    -------
    Family
    """
    if isinstance(family, Family):
        return family
    if isinstance(family, type) and issubclass(family, Family):
        return family()
    if not isinstance(family, str):
        raise ArgumentTypeError(
            f"family must be a string such as 'bernoulli' or a Family object, "
            f"not {type(family).__name__}"
        )
    key = family.strip().lower().removesuffix(".glmm").removesuffix("()")
    if key not in _FAMILIES:
        close = difflib.get_close_matches(key, list(_FAMILIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ArgumentError(
            f"unknown family {family!r}{hint}; choose one of {sorted(_FAMILIES)} "
            "(all with their canonical link)"
        )
    return _FAMILIES[key]()
