"""pyglmm: maximum likelihood for GLMMs by Monte Carlo likelihood approximation.

The entry point is :func:`glmm`; it returns a :class:`GLMMResults`.

``import pyglmm`` loads nothing heavy: the names below are imported when first used
(PEP 562), so a command line call or a script pays for numpy, pandas, scipy, formulaic
and numba only when it fits or loads data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the static view of the lazily imported names
    from . import datasets, errors
    from .api import glmm
    from .compare import anova, lrt
    from .families import Bernoulli, Binomial, Family, Poisson, get_family
    from .replicates import seed_check
    from .results import GLMMResults

#: Public name -> (module, attribute); an attribute of ``None`` is the module itself.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Bernoulli": (".families", "Bernoulli"),
    "Binomial": (".families", "Binomial"),
    "Family": (".families", "Family"),
    "GLMMResults": (".results", "GLMMResults"),
    "Poisson": (".families", "Poisson"),
    "anova": (".compare", "anova"),
    "lrt": (".compare", "lrt"),
    "datasets": (".datasets", None),
    "errors": (".errors", None),
    "get_family": (".families", "get_family"),
    "glmm": (".api", "glmm"),
    "seed_check": (".replicates", "seed_check"),
}

__all__ = [
    "Bernoulli",
    "Binomial",
    "Family",
    "GLMMResults",
    "Poisson",
    "anova",
    "datasets",
    "errors",
    "get_family",
    "glmm",
    "lrt",
    "seed_check",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it as a module attribute."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pyglmm' has no attribute {name!r}") from None
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
