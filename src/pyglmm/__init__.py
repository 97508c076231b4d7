"""pyglmm: maximum likelihood for GLMMs by Monte Carlo likelihood approximation.

The entry point is :func:`glmm`; it returns a :class:`GLMMResults`.
"""

from __future__ import annotations

from . import datasets, errors
from .api import glmm
from .compare import anova, lrt
from .families import Bernoulli, Binomial, Family, Poisson, get_family
from .results import GLMMResults

__all__ = [
    "Bernoulli",
    "Binomial",
    "Family",
    "GLMMResults",
    "Poisson",
    "anova",
    "lrt",
    "datasets",
    "errors",
    "get_family",
    "glmm",
]

__version__ = "0.1.0"
