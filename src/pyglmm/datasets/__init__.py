"""Data sets shipped with pyglmm: the seven data sets of R's glmm package.

Each loader returns a fresh :class:`pandas.DataFrame` whose grouping columns are
categorical, so they are factors in random-effect formulas. Factor levels keep R's
order (so the reference level of a fixed-effect factor is R's).

Provenance. Every file in ``data/`` is a copy of the ``data/*.rda`` file of the same
name in R's glmm package (Knudson, Geyer and Benson; CRAN, GPL-2), converted to CSV
with values, column names, row order and factor levels unchanged; glmm 1.4.5
(2024-09-22) for ``booth2``, ``bacteria``, ``cbpp2`` and ``murder``. The conversion of
glmm 1.4.5's salamander, BoothHobert and radish2 gives the three older files here
value for value. Independent checks: ``bacteria`` equals the ``bacteria`` data of R's MASS
package (Venables and Ripley 2002) column by column, plus glmm's 0/1 column ``y2``;
``cbpp2`` is lme4's ``cbpp`` (Lesnoff et al. 2004) with one row per animal, and its
counts per herd and period equal ``cbpp``'s ``incidence`` and ``size``; ``booth2``'s
first three columns equal ``booth_hobert``; ``murder``'s counts by race are those of
Agresti (2002) for 0 to 6 victims, with ``y`` one more than the number of victims (see
:func:`load_murder`). The original sources are cited in each loader.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = [
    "load_bacteria",
    "load_booth2",
    "load_booth_hobert",
    "load_cbpp2",
    "load_murder",
    "load_radish2",
    "load_salamander",
]


def _read(
    name: str,
    categorical: list[str],
    as_str: list[str],
    levels: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Read ``data/<name>.csv``; ``categorical`` columns become factors.

    Levels are ``levels[column]`` where given (R's order), else sorted (numerically
    when every label is an integer).
    """
    path = resources.files(__package__).joinpath("data", f"{name}.csv")
    with path.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={c: str for c in as_str})
    for column in categorical:
        values = frame[column]
        if levels is not None and column in levels:
            order = list(levels[column])
        else:
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


def load_booth2() -> pd.DataFrame:
    """Booth and Hobert's (1999) logit-normal data with a second, crossed factor.

    R glmm's ``Booth2``: the 150 rows of :func:`load_booth_hobert` plus a column
    ``z2`` that R glmm's authors added to illustrate two variance components. ``z2``
    crosses the clusters: every cluster has 3 rows at each of its 5 levels.

    Columns: ``y`` (0/1 response), ``x1`` (covariate), ``z1`` (cluster, 10 levels) and
    ``z2`` (5 levels); ``z1`` and ``z2`` are categorical (``z2`` is an integer column
    in R).

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    Booth, J. G. and Hobert, J. P. (1999). Maximizing generalized linear mixed model
    likelihoods with an automated Monte Carlo EM algorithm. *JRSS B* 61, 265-285.

    Examples
    --------
    >>> from pyglmm.datasets import load_booth2
    >>> d = load_booth2()
    >>> d.shape, d["z2"].nunique()
    ((150, 4), 5)
    """
    return _read("booth2", ["z1", "z2"], ["z1", "z2"])


def load_bacteria() -> pd.DataFrame:
    """Presence of *H. influenzae* in children with otitis media (220 tests of 50 children).

    R glmm's ``bacteria``, which is the ``bacteria`` data of R's MASS package (Venables
    and Ripley 2002, from a trial by Dr A. Leach in the Northern Territory of
    Australia) plus a 0/1 copy of the response. Children were randomised to drug or
    placebo and to active encouragement to comply; tests at weeks 0, 2, 4, 6 and 11,
    30 of them missing (not included).

    Columns: ``y`` (presence, levels ``n``, ``y``), ``ap`` (active/placebo: ``a``,
    ``p``), ``hilo`` (compliance: ``hi``, ``lo``), ``week``, ``ID`` (child, 50
    levels), ``trt`` (``placebo``, ``drug``, ``drug+``: a recoding of ``ap`` and
    ``hilo``; ``placebo`` is the reference level, as in R) and ``y2`` (``y`` as 0/1).

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    Venables, W. N. and Ripley, B. D. (2002). *Modern Applied Statistics with S*, 4th
    edition. Springer.

    Examples
    --------
    >>> from pyglmm.datasets import load_bacteria
    >>> d = load_bacteria()
    >>> d.shape, d["ID"].nunique(), d["trt"].cat.categories.tolist()
    ((220, 7), 50, ['placebo', 'drug', 'drug+'])
    """
    return _read(
        "bacteria", ["y", "ap", "hilo", "ID", "trt"], ["y", "ap", "hilo", "ID", "trt"],
        levels={"y": ["n", "y"], "ap": ["a", "p"], "hilo": ["hi", "lo"],
                "trt": ["placebo", "drug", "drug+"]},
    )


def load_cbpp2() -> pd.DataFrame:
    """Contagious bovine pleuropneumonia in 15 Ethiopian herds, one row per animal.

    R glmm's ``cbpp2``: lme4's ``cbpp`` (Lesnoff et al. 2004; serological incidence of
    CBPP in zebu cattle, blood samples taken quarterly) reformatted with one 0/1 row
    per animal and period instead of counts of cases out of herd size. Some animals
    were lost to follow-up.

    Columns: ``Y`` (1 if CBPP was observed), ``period`` (1-4) and ``herd`` (1-15),
    both categorical.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    Lesnoff, M. et al. (2004). Within-herd spread of contagious bovine pleuropneumonia
    in Ethiopian highlands. *Preventive Veterinary Medicine* 64, 27-40.

    Examples
    --------
    >>> from pyglmm.datasets import load_cbpp2
    >>> d = load_cbpp2()
    >>> d.shape, int(d["Y"].sum())
    ((842, 3), 99)
    """
    return _read("cbpp2", ["period", "herd"], ["period", "herd"])


def load_murder() -> pd.DataFrame:
    """Homicide victims known personally, by race (1,308 respondents; Agresti 2002).

    R glmm's ``murder``: answers to "Within the past 12 months, how many people have you
    known personally that were victims of homicide?" (Agresti 2002; 159 black and
    1,149 white respondents). There is one row per respondent and no grouping
    column; a respondent-level random effect needs an index column added by hand.

    Columns: ``y``, ``race`` (``Black``, ``White``), ``black`` and ``white`` (0/1
    indicators, categorical as in R). In R glmm's copy ``y`` runs from 1 to 7: it is
    the number of victims *plus one*: its counts by race (black 119, 16, 12, 7, 3, 2,
    0; white 1070, 60, 14, 4, 0, 0, 1 for ``y`` = 1, ..., 7) are Agresti's for 0 to 6
    victims, so ``y - 1`` is the number of victims. The column is kept as R
    glmm has it.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    Agresti, A. (2002). *Categorical Data Analysis*, 2nd edition. Wiley.

    Examples
    --------
    >>> from pyglmm.datasets import load_murder
    >>> d = load_murder()
    >>> d.shape, int(d["y"].min()), int(d["y"].max())
    ((1308, 4), 1, 7)
    """
    return _read(
        "murder", ["race", "black", "white"], ["race", "black", "white"],
        levels={"race": ["Black", "White"], "black": ["0", "1"], "white": ["0", "1"]},
    )
