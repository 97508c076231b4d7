"""Exceptions and warnings raised by pyglmm.

Every error a user can cause is a subclass of :class:`PyGLMMError` and of the
built-in ``ValueError`` or ``TypeError``, so ``except ValueError`` keeps working,
and each message names the argument or column at fault and what to do instead.
"""

from __future__ import annotations


class PyGLMMError(Exception):
    """Base class of every exception raised on purpose by pyglmm."""


class DataError(PyGLMMError, ValueError):
    """The data (a column, the response, missing values) cannot be used as given."""


class FormulaError(PyGLMMError, ValueError):
    """A fixed or random formula cannot be parsed or refers to unknown columns."""


class ArgumentError(PyGLMMError, ValueError):
    """An argument of :func:`pyglmm.glmm` has an invalid value."""


class ArgumentTypeError(PyGLMMError, TypeError):
    """An argument of :func:`pyglmm.glmm` has the wrong type."""


class ConvergenceError(PyGLMMError, ValueError):
    """The fit cannot start or continue (for example an infeasible start)."""


class BackendError(PyGLMMError, RuntimeError):
    """A parallel backend failed: a worker pool that cannot be rebuilt, or a scheduler gone."""


class PyGLMMWarning(UserWarning):
    """Base class of the warnings issued by pyglmm."""


class ConvergenceWarning(PyGLMMWarning):
    """The trust-region optimiser stopped before its convergence test fired."""


class ImportanceSamplingWarning(PyGLMMWarning):
    """The importance weights are degenerate: the Monte Carlo error is unreliable."""


class DataWarning(PyGLMMWarning):
    """The data were accepted but something about them deserves attention."""


class BoundaryWarning(PyGLMMWarning):
    """A variance component was estimated at the boundary 0 of the parameter space."""
