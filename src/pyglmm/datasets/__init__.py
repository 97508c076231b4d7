"""Data sets shipped with pyglmm (copies of the data of R's glmm package).

Each loader returns a fresh :class:`pandas.DataFrame` whose grouping columns are
categorical, so they are factors in random-effect formulas.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_booth_hobert", "load_radish2", "load_salamander"]


def _read(name: str, categorical: list[str], as_str: list[str]) -> pd.DataFrame:
    path = resources.files(__package__).joinpath("data", f"{name}.csv")
    with path.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={c: str for c in as_str})
    for column in categorical:
        values = frame[column]
        try:
            order = sorted(values.unique(), key=lambda v: (0, int(v)))
        except ValueError:
            order = sorted(values.unique())
        frame[column] = pd.Categorical(values, categories=order)
    return frame


def load_salamander() -> pd.DataFrame:
    """Salamander mating experiments (McCullagh and Nelder 1989; 360 matings).

    Columns: ``Mate`` (1 if the pair mated), ``Cross`` (female/male population,
    ``"R/R"``, ``"R/W"``, ``"W/R"``, ``"W/W"``), ``Female`` and ``Male`` (animal
    identifiers, categorical: 60 females and 60 males).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> from pyglmm.datasets import load_salamander
    >>> load_salamander().shape
    (360, 4)
    """
    return _read("salamander", ["Cross", "Female", "Male"], ["Cross", "Female", "Male"])


def load_booth_hobert() -> pd.DataFrame:
    """Simulated logit-normal data of Booth and Hobert (1999): 10 clusters of 15.

    Columns: ``y`` (0/1 response), ``x1`` (covariate), ``z1`` (cluster, categorical).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> from pyglmm.datasets import load_booth_hobert
    >>> load_booth_hobert()["z1"].nunique()
    10
    """
    return _read("booth_hobert", ["z1"], ["z1"])


def load_radish2() -> pd.DataFrame:
    """Flower counts of wild radish (233 plants; Poisson counts in the hundreds).

    Columns: ``Site``, ``Block``, ``Region``, ``Pop`` (categorical), ``varb``,
    ``resp`` (flower count) and ``id``.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> from pyglmm.datasets import load_radish2
    >>> len(load_radish2())
    233
    """
    return _read("radish2", ["Site", "Block", "Region", "Pop"], ["Site", "Block", "Region", "Pop"])
