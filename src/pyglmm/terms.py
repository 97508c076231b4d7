"""Random-effect terms: a grouping factor, its columns and its covariance structure.

A term is what one R glmm random formula (``~ 0 + Female``, ``~ 0 + x:g``) or one
lme4 bar term (``(1 + x | g)``) denotes: for every level ``l`` of its grouping factor
a vector ``u_l`` of ``k`` random effects, one per column (an intercept and/or
slopes), with ``u_l ~ N_k(0, Sigma)`` and ``Sigma`` given by the term's
:class:`~pyglmm.covariance.CovarianceStructure`. Observation ``i`` at level ``l``
gets ``sum_c z_ic u_lc`` in its linear predictor, ``z_ic`` the value of column ``c``
(1 for an intercept), so the design ``Z`` is stored as, per term and column, the
effect index and the value of each observation (no matrix).

The term's parameters live in the :class:`~pyglmm.layout.ParameterLayout`; the
design order of the random effects is term by term (tied terms adjacent), then level,
then column. See ``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .covariance import CovarianceStructure, Scalar

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Column name of a term's intercept (as R names it).
INTERCEPT = "(Intercept)"


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term.

    Attributes
    ----------
    formula : str
        The term as given: ``"~ 0 + Female"`` or ``"(1 + x | g)"``.
    grouping : tuple of str
        Data columns whose interaction is the grouping factor.
    levels : tuple of str
        Level labels in the order of the random effects.
    codes : ndarray of int, shape (n,)
        Level index of every observation.
    columns : tuple of str
        Names of the term's columns, R style (``"(Intercept)"``, ``"x"``).
    values : ndarray, shape (n, k), or None
        Value of every column for every observation; None for a single column of
        ones (a 0/1 design, R glmm's variance component).
    structure : CovarianceStructure
        The covariance of ``u_l`` (``k = len(columns)``).
    """

    formula: str
    grouping: tuple[str, ...]
    levels: tuple[str, ...]
    codes: IntArray
    columns: tuple[str, ...] = (INTERCEPT,)
    values: FloatArray | None = None
    structure: CovarianceStructure | None = None
    #: formulaic's model spec of the columns of an lme4 bar term (None: the columns are
    #: an intercept, or R glmm's product of float columns named in ``columns``), which
    #: rebuilds them on new data.
    spec: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.structure is None:
            object.__setattr__(self, "structure", Scalar(len(self.columns)))
        elif self.structure.k != len(self.columns):
            raise ValueError("the structure's k must be the number of columns")

    @property
    def covariance(self) -> CovarianceStructure:
        """The term's covariance structure."""
        assert self.structure is not None
        return self.structure

    @property
    def name(self) -> str:
        """The grouping factor's name as R prints it (``Female`` or ``Site:Block``)."""
        return ":".join(self.grouping)

    @property
    def label(self) -> str:
        """Default name of a one-variance term: ``g``, or ``x:g`` for a slope on ``x``."""
        if self.columns == (INTERCEPT,):
            return self.name
        return ":".join(self.columns) + ":" + self.name

    @property
    def n_levels(self) -> int:
        """Number of levels ``L`` of the grouping factor."""
        return len(self.levels)

    @property
    def n_columns(self) -> int:
        """Number of columns ``k``."""
        return len(self.columns)

    @property
    def n_effects(self) -> int:
        """Number of random effects ``L k``."""
        return self.n_levels * self.n_columns

    @property
    def is_indicator(self) -> bool:
        """Whether the term is one intercept column (a 0/1 design)."""
        return self.values is None

    def column_values(self, c: int) -> FloatArray:
        """Values of column ``c`` for every observation (ones for an indicator term)."""
        if self.values is None:
            return np.ones(self.codes.size)
        return np.asarray(self.values[:, c], dtype=np.float64)

    def effect_labels(self) -> list[str]:
        """Labels of the term's effects in design order (level, then column).

        ``"Female:10"`` for an indicator term, ``"g:g01:x"`` otherwise.
        """
        if self.is_indicator and self.columns == (INTERCEPT,):
            return [f"{self.name}:{level}" for level in self.levels]
        return [f"{self.name}:{level}:{col}" for level in self.levels for col in self.columns]


@dataclass(frozen=True)
class TermInfo:
    """What a fitted model keeps of a term (the part a saved record holds).

    Attributes
    ----------
    name : str
        The grouping factor (``g`` or ``g1:g2``).
    formula : str
        The term as written.
    columns : tuple of str
        Its columns.
    structure : str
        Its covariance structure's name.
    params : tuple of int
        Positions of its parameters in ``psi`` (``theta[p:]``), in the structure's order.
    n_levels : int
        Levels of the grouping factor.
    """

    name: str
    formula: str
    columns: tuple[str, ...]
    structure: str
    params: tuple[int, ...]
    n_levels: int

    @classmethod
    def of(cls, term: RandomTerm, params: IntArray) -> TermInfo:
        """The info of a term whose parameters sit at ``params``."""
        return cls(term.name, term.formula, term.columns, term.covariance.name,
                   tuple(int(i) for i in params), term.n_levels)

    def covariance_structure(self) -> CovarianceStructure:
        """A fresh instance of the term's structure."""
        from .covariance import make_structure

        return make_structure(self.structure, len(self.columns))
