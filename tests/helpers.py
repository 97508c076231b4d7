"""Test helpers: reference values (with provenance) and small model builders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pyglmm as pg
from pyglmm.design import build_design
from pyglmm.importance import glmm_mixture, laplace_t
from pyglmm.mcla import EffectShift, MCLAObjective
from pyglmm.parallel import ChunkStore, chunk_seeds, chunk_sizes
from pyglmm.problem import Problem

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
PACKAGED_REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def load_reference(name: str) -> dict:
    """Reference values with provenance (copied from shared/reference into tests/)."""
    for folder in (PACKAGED_REFERENCE_DIR, REFERENCE_DIR):
        path = folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


def make_objective(
    fixed, random, data, family, *, m=400, chunk=150, seed=1, joint=False, equal=None,
    importance="laplace", theta_centre=None, shift=False,
):
    """A small MCLA objective (problem, objective, centre theta) for derivative tests."""
    fam = pg.get_family(family)
    design = build_design(fixed, random, data, fam, varcomps_equal=equal)
    problem = Problem.build(design, fam, joint=joint)
    p, t = design.n_fixed, design.n_components
    if theta_centre is None:
        theta_centre = np.concatenate([np.full(p, 0.2), np.full(t, 0.7)])
    beta, nu = theta_centre[:p], theta_centre[p:]
    effect_shift = None
    if importance == "laplace":
        sampler, _, slope = laplace_t(problem, beta, nu, 5.0)
        if shift:
            effect_shift = EffectShift.build(problem, slope, beta)
    else:
        u = np.zeros(problem.n_effects)
        sampler = glmm_mixture(problem, beta, nu, u, (0.4, 0.3, 0.3), 5.0)
    sizes = chunk_sizes(m, chunk)
    store = ChunkStore(problem, sampler, chunk_seeds(np.random.SeedSequence(seed), 0,
                                                     len(sizes)), sizes, shift=effect_shift)
    objective = MCLAObjective(problem, store, sizes, shift=effect_shift)
    return problem, objective, np.asarray(theta_centre, float)
