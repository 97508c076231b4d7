"""The pictures of a fit (pyglmm.plots): each renders to a PNG; matplotlib stays optional."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

import pyglmm as pg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_fit(booth_hobert):
    """A small, fast fit: 10 blocks of one effect, few draws."""
    return pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=500, rng=3)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def agg():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    return matplotlib


def test_diagnostics_renders(agg, small_fit):
    fig = small_fit.plot_diagnostics(max_blocks=3)
    data = _png(fig)
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
    assert len(fig.axes) == 4
    # the weights panel draws one curve per requested block
    assert len(fig.axes[1].get_lines()) == 3 + 1  # and the line at 1


def test_diagnostics_of_a_restored_fit(agg, small_fit):
    restored = pg.GLMMResults.from_json(small_fit.to_json())
    data = _png(restored.plot_diagnostics())
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000


def test_ranef_renders(agg, small_fit):
    fig = small_fit.plot_ranef()
    data = _png(fig)
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
    assert [ax.get_title() for ax in fig.axes] == ["z1"]
    with pytest.raises(ValueError, match="names no random term"):
        small_fit.plot_ranef(terms=["nope"])


def test_profile_renders(agg, small_fit):
    fig = small_fit.plot_profile("x1", n=7, scale="deviance")
    data = _png(fig)
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
    assert fig.axes[0].get_xlabel() == "x1"
    with pytest.raises(ValueError, match="scale"):
        small_fit.plot_profile("x1", scale="log")


def test_missing_matplotlib_says_how_to_install(small_fit, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for draw in (small_fit.plot_diagnostics, small_fit.plot_ranef):
        with pytest.raises(ImportError, match=r"pip install 'pyglmm\[plot\]'"):
            draw()
    with pytest.raises(ImportError, match=r"pyglmm\[plot\]"):
        small_fit.plot_profile("x1")


def test_import_pyglmm_does_not_import_matplotlib():
    code = "import sys, pyglmm; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
