"""Test helpers: reference values (with provenance) and small model builders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pyglmm as pg
from pyglmm.design import build_design
from pyglmm.fitting import build_round
from pyglmm.problem import Problem
from pyglmm.validation import check_settings

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
PACKAGED_REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def load_reference(name: str) -> dict:
    """Reference values with provenance (copied from shared/reference into tests/)."""
    for folder in (PACKAGED_REFERENCE_DIR, REFERENCE_DIR):
        path = folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


def round_settings(*, m=400, chunk=150, seed=1, joint=False, importance="laplace",
                   shift=False, p=(0.4, 0.3, 0.3), zeta=5.0, sampler="auto"):
    """Fit settings for building small rounds (one t df for every block, no recentring)."""
    return check_settings(
        m=m, blocks="joint" if joint else "independent", importance=importance, recentre=0,
        pilot_m=m, p=p, zeta=zeta, rmax=1000.0, iterlim=100, chunk_size=chunk, shift=shift,
        rng=seed, sampler=sampler,
    )


def make_objective(
    fixed, random, data, family, *, m=400, chunk=150, seed=1, joint=False, equal=None,
    importance="laplace", theta_centre=None, shift=False, sampler="auto",
):
    """A small MCLA objective (problem, objective, centre theta) for derivative tests.

    The first round of a fit with these settings, centred at ``theta_centre``; the
    mixture proposal (``importance="glmm"``) is centred at ``u = 0``.
    """
    fam = pg.get_family(family)
    design = build_design(fixed, random, data, fam, varcomps_equal=equal)
    problem = Problem.build(design, fam, joint=joint)
    p, t = design.n_fixed, design.n_components
    if theta_centre is None:
        theta_centre = np.concatenate([np.full(p, 0.2), np.full(t, 0.7)])
    theta_centre = np.asarray(theta_centre, float)
    settings = round_settings(m=m, chunk=chunk, seed=seed, joint=joint,
                              importance=importance, shift=shift, sampler=sampler)
    built = build_round(problem, settings, 0, theta_centre, m,
                        centre_effects=np.zeros(problem.n_effects))
    return problem, built.objective, theta_centre


def fd_gradient(f, x, h=1e-5):
    """Central finite differences of the scalar function ``f`` at ``x`` (relative steps)."""
    out = np.empty_like(x)
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = h * max(1.0, abs(x[j]))
        out[j] = (f(x + step) - f(x - step)) / (2 * step[j])
    return out


def assert_derivatives_match(objective, theta, rtol=1e-5):
    """The MCLA's gradient and Hessian at ``theta`` against finite differences of its
    value and gradient (largest error relative to the largest entry)."""
    ev = objective.evaluate(theta)
    grad = fd_gradient(lambda t: objective.evaluate(t).value, theta)
    assert np.max(np.abs(ev.gradient - grad)) < rtol * np.max(np.abs(grad))
    hess = np.column_stack([fd_gradient(lambda t, j=j: objective.evaluate(t).gradient[j],
                                        theta) for j in range(theta.size)])
    hess = 0.5 * (hess + hess.T)
    assert np.max(np.abs(ev.hessian - hess)) < rtol * np.max(np.abs(hess))
    return ev
