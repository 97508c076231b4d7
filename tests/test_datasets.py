"""The data sets of R's glmm shipped with pyglmm: shapes, factor levels and cross-checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pyglmm as pg
from pyglmm import datasets

LOADERS = {
    "load_salamander": ((360, 4), ["Cross", "Female", "Male"]),
    "load_booth_hobert": ((150, 3), ["z1"]),
    "load_radish2": ((233, 7), ["Site", "Block", "Region", "Pop"]),
    "load_booth2": ((150, 4), ["z1", "z2"]),
    "load_bacteria": ((220, 7), ["y", "ap", "hilo", "ID", "trt"]),
    "load_cbpp2": ((842, 3), ["period", "herd"]),
    "load_murder": ((1308, 4), ["race", "black", "white"]),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_shape_and_categorical_columns(name):
    shape, categorical = LOADERS[name]
    frame = getattr(datasets, name)()
    assert frame.shape == shape
    assert not frame.isna().any().any()
    for column in categorical:
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    assert name in datasets.__all__


def test_loaders_return_fresh_frames():
    a = datasets.load_cbpp2()
    a.loc[0, "Y"] = 7
    assert datasets.load_cbpp2().loc[0, "Y"] == 1


def test_booth2_extends_booth_hobert():
    b2, bh = datasets.load_booth2(), datasets.load_booth_hobert()
    pd.testing.assert_frame_equal(b2[["y", "x1", "z1"]], bh)
    # z2 crosses the clusters: 3 rows of every cluster at each of its 5 levels
    assert (pd.crosstab(b2["z1"], b2["z2"]) == 3).all().all()
    assert b2["z2"].cat.categories.tolist() == ["1", "2", "3", "4", "5"]


def test_bacteria_levels_and_response():
    d = datasets.load_bacteria()
    assert d["trt"].cat.categories.tolist() == ["placebo", "drug", "drug+"]
    assert d["y"].cat.categories.tolist() == ["n", "y"]
    assert d["ID"].nunique() == 50
    np.testing.assert_array_equal(d["y2"].to_numpy(), (d["y"] == "y").to_numpy().astype(int))
    assert sorted(d["week"].unique().tolist()) == [0, 2, 4, 6, 11]


def test_cbpp2_counts_per_herd_and_period():
    d = datasets.load_cbpp2()
    table = d.groupby(["herd", "period"], observed=True)["Y"].agg(["sum", "count"])
    assert len(table) == 56  # lme4's cbpp has 56 rows
    assert int(table["count"].sum()) == 842 and int(table["sum"].sum()) == 99
    # the first herd, as in lme4's cbpp: incidence 2, 3, 4, 0 of sizes 14, 12, 9, 5
    assert table.loc["1"]["sum"].tolist() == [2, 3, 4, 0]
    assert table.loc["1"]["count"].tolist() == [14, 12, 9, 5]


def test_murder_counts_by_race():
    d = datasets.load_murder()
    counts = pd.crosstab(d["race"], d["y"])
    assert counts.loc["Black"].tolist() == [119, 16, 12, 7, 3, 2, 0]
    assert counts.loc["White"].tolist() == [1070, 60, 14, 4, 0, 0, 1]
    assert ((d["race"] == "Black") == (d["black"] == "1")).all()
    assert ((d["race"] == "White") == (d["white"] == "1")).all()


def test_cbpp2_fits():
    fit = pg.glmm("Y ~ period", ["~ 0 + herd"], datasets.load_cbpp2(), family="bernoulli",
                  m=500, rng=1)
    assert fit.coef().index.tolist() == ["(Intercept)", "period2", "period3", "period4"]
    assert fit.n_blocks == 15 and np.isfinite(fit.loglik())
