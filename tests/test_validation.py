"""Arguments of ``glmm``: every bad value is refused up front with an actionable message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pyglmm as pg
from pyglmm.errors import ArgumentError, ArgumentTypeError, PyGLMMError
from pyglmm.validation import check_par_init, check_settings, seed_sequence

SAL = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"], family="bernoulli")
NAMES = ("CrossR/R", "CrossR/W", "CrossW/R", "CrossW/W", "F", "M")


def _settings(**changes):
    base = dict(
        m=100, blocks="independent", importance="laplace", recentre="auto", pilot_m=50,
        p=(1 / 3, 1 / 3, 1 / 3), zeta=5.0, rmax=1000.0, iterlim=100, chunk_size=None,
    )
    return check_settings(**(base | changes))


def _refused(salamander, error, message, **kwargs):
    """glmm refuses ``kwargs`` with ``error`` (before fitting) and ``message``."""
    call = SAL | {"data": salamander, "m": 100, "rng": 1} | kwargs
    with pytest.raises(error, match=message) as info:
        pg.glmm(**call)
    assert isinstance(info.value, PyGLMMError)
    assert isinstance(info.value, ValueError | TypeError)
    return str(info.value)


# -- m -------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [0, -5])
def test_m_below_one(salamander, m):
    _refused(salamander, ArgumentError, f"m must be at least 1, got {m}", m=m)


@pytest.mark.parametrize(
    ("m", "message"),
    [(1e4, "m must be an integer, got the float 10000.0; write 10000"),
     (2.5, "m must be an integer"), ("1000", "m must be an integer, not str"),
     (True, "m must be an integer, not bool"), (None, "m must be an integer")],
)
def test_m_not_an_integer(salamander, m, message):
    _refused(salamander, ArgumentTypeError, message, m=m)


def test_m_as_numpy_integer_is_fine():
    assert _settings(m=np.int64(300)).m == 300


# -- p1, p2, p3 ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "message"),
    [
        ((0.5, 0.5, 0.5), r"p1 \+ p2 \+ p3 must equal 1"),
        ((0.2, 0.2, 0.2), r"p1 \+ p2 \+ p3 must equal 1"),
        ((0.0, 0.5, 0.5), "p1 must be positive"),
        ((-0.1, 0.6, 0.5), r"p1 must lie in \[0, 1\]"),
        ((1.2, -0.1, -0.1), r"p1 must lie in \[0, 1\]"),
        ((np.nan, 0.5, 0.5), r"p1 must lie in \[0, 1\]"),
    ],
)
def test_bad_mixture_probabilities(salamander, p, message):
    _refused(salamander, ArgumentError, message, p1=p[0], p2=p[1], p3=p[2],
             importance="glmm")


def test_mixture_sum_is_tested_with_a_tolerance():
    # R tests p1 + p2 + p3 == 1 exactly and rejects (0.7, 0.2, 0.1)
    assert sum(_settings(p=(0.7, 0.2, 0.1)).p) == pytest.approx(1.0)
    assert _settings(p=(0.5, 0.5, 0.0)).p == (0.5, 0.5, 0.0)


def test_mixture_probability_of_wrong_type(salamander):
    _refused(salamander, ArgumentTypeError, "p2 must be a number, not str", p2="0.3")


# -- zeta, rmax, iterlim -------------------------------------------------------------------
@pytest.mark.parametrize("zeta", [0, -1.0, np.inf, np.nan])
def test_zeta_not_positive(salamander, zeta):
    _refused(salamander, ArgumentError, "zeta must be a positive finite number", zeta=zeta)


def test_non_integer_zeta_is_fine():
    assert _settings(zeta=2.5).zeta == 2.5


@pytest.mark.parametrize("rmax", [0, -10.0, np.inf])
def test_rmax_not_positive(salamander, rmax):
    _refused(salamander, ArgumentError, "rmax must be a positive finite number", rmax=rmax)


@pytest.mark.parametrize(("iterlim", "error"), [(0, ArgumentError), (-3, ArgumentError),
                                                (10.0, ArgumentTypeError)])
def test_iterlim_below_one(salamander, iterlim, error):
    _refused(salamander, error, "iterlim must be", iterlim=iterlim)


def test_type_errors_for_real_settings(salamander):
    _refused(salamander, ArgumentTypeError, "zeta must be a real number", zeta="5")
    _refused(salamander, ArgumentTypeError, "rmax must be a real number", rmax=None)


# -- the other options ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"blocks": "separate"}, ArgumentError, "blocks must be 'independent' or 'joint'"),
        ({"importance": "normal"}, ArgumentError, "importance must be 'laplace' or 'glmm'"),
        ({"recentre": "always"}, ArgumentError, "recentre must be 'auto' or a non-negative"),
        ({"recentre": -1}, ArgumentError, "recentre must be at least 0"),
        ({"pilot_m": 0}, ArgumentError, "pilot_m must be at least 1"),
        ({"chunk_size": 0}, ArgumentError, "chunk_size must be at least 1"),
        ({"rng": -1}, ArgumentError, "rng must be a non-negative integer seed"),
        ({"rng": "seed"}, ArgumentTypeError, "rng must be an int seed"),
        ({"rng": 1.5}, ArgumentTypeError, "rng must be an int seed"),
        ({"na_action": "omit"}, ArgumentError, "na_action must be 'raise' or 'drop'"),
        ({"family": "gaussian"}, ArgumentError, "unknown family 'gaussian'"),
        ({"family": None}, ArgumentTypeError, "family must be a string"),
    ],
)
def test_other_options(salamander, kwargs, error, message):
    _refused(salamander, error, message, **kwargs)


def test_seed_sequence_forms():
    assert seed_sequence(5).entropy == 5
    seq = np.random.SeedSequence(7)
    assert seed_sequence(seq) is seq
    assert isinstance(seed_sequence(np.random.default_rng(1)), np.random.SeedSequence)
    assert isinstance(seed_sequence(None), np.random.SeedSequence)
    with pytest.raises(ArgumentTypeError):
        seed_sequence(True)


# -- varcomps_equal and varcomps_names through glmm ----------------------------------------
@pytest.mark.parametrize(
    ("equal", "error", "message"),
    [
        ([2, 1], ArgumentError, "1, 2, ..., T in order of first appearance"),
        ([1, 3], ArgumentError, "in order of first appearance"),
        ([1], ArgumentError, "1 entries but there are 2 random formulas"),
        ([1, 1, 2], ArgumentError, "3 entries but there are 2 random formulas"),
        ([1.5, 2], ArgumentTypeError, "must hold integers 1..T"),
        (1, ArgumentTypeError, "varcomps_equal must be a sequence"),
    ],
)
def test_bad_varcomps_equal(salamander, equal, error, message):
    _refused(salamander, error, message, varcomps_equal=equal)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["F"], r"1 name\(s\) but the model has 2 variance component\(s\)"),
        (["F", "M", "X"], r"3 name\(s\) but the model has 2"),
        (["F", "F"], "varcomps_names must be distinct"),
        (["CrossR/R", "M"], "also fixed-effect names"),
    ],
)
def test_bad_varcomps_names(salamander, names, message):
    _refused(salamander, ArgumentError, message, varcomps_names=names)


def test_tied_components_need_one_name(salamander):
    message = _refused(salamander, ArgumentError, "2 name", varcomps_equal=[1, 1],
                       varcomps_names=["F", "M"])
    assert "one name per distinct value of varcomps_equal" in message


# -- par_init ------------------------------------------------------------------------------
@pytest.mark.parametrize("par_init", [[0.0] * 5, [0.0] * 7, [1.0]])
def test_par_init_of_wrong_length(salamander, par_init):
    message = _refused(salamander, ArgumentError, f"par_init has {len(par_init)} values but "
                       "the model has 6 parameters", par_init=par_init,
                       varcomps_names=["F", "M"])
    assert "'CrossR/R'" in message and "'M'" in message


@pytest.mark.parametrize("variance", [0.0, -1.0, 1e-12])
def test_par_init_with_a_non_positive_variance(salamander, variance):
    _refused(salamander, ArgumentError, r"variance component\(s\) \['M'\] a non-positive",
             par_init=[0, 0, 0, 0, 1.0, variance], varcomps_names=["F", "M"])


def test_par_init_not_numbers_or_not_finite(salamander):
    _refused(salamander, ArgumentTypeError, "par_init must be a sequence of numbers",
             par_init=["a"] * 6)
    _refused(salamander, ArgumentTypeError, "not a string", par_init="000011")
    _refused(salamander, ArgumentError, "finite", par_init=[0, 0, np.inf, 0, 1, 1])


def test_par_init_series_is_aligned_by_name():
    series = pd.Series([1.0, 2.0, 0.1, 0.2, 0.3, 0.4], index=NAMES)
    shuffled = series.iloc[::-1]
    np.testing.assert_array_equal(check_par_init(shuffled, NAMES, 4), series.to_numpy())
    with pytest.raises(ArgumentError, match="par_init is named"):
        check_par_init(series.rename({"F": "Female"}), NAMES, 4)
    plain = pd.Series(series.to_numpy())
    np.testing.assert_array_equal(check_par_init(plain, NAMES, 4), series.to_numpy())
    assert check_par_init(None, NAMES, 4) is None
