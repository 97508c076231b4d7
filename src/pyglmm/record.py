"""The record of a fit: its attributes gathered from a run, and its plain JSON form.

:meth:`pyglmm.GLMMResults.from_fit` takes its attributes from :func:`fit_attributes`;
:meth:`~pyglmm.GLMMResults.to_dict` writes :func:`fit_record` and
:meth:`~pyglmm.GLMMResults.from_dict` reads it back with :func:`fit_values`. Vectors
are lists, matrices lists of rows; NaN and infinities are the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``, so the record is strict JSON and every float
round-trips exactly. No pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import scipy
from numpy.typing import NDArray

from .errors import ArgumentError
from .families import get_family
from .intervals import observed_covariance
from .optimize import TrustStep
from .settings import SETTINGS_KEYS, FitSettings
from .terms import TermInfo

if TYPE_CHECKING:
    from .design import Design
    from .families import Family
    from .mcla import Evaluation, MCLAObjective
    from .problem import Problem
    from .results import FitRound, GLMMResults

FloatArray = NDArray[np.float64]

#: ``format`` of the records written by :meth:`GLMMResults.to_dict`.
RECORD_FORMAT = "pyglmm.GLMMResults"
#: Version of that record layout (raise on incompatible changes).
RECORD_VERSION = 2
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

#: Sections of the record of :meth:`GLMMResults.to_dict` and the attributes in each.
RECORD_LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("fixed_formula", "random_formulas", "family", "fixed_names",
               "varcomps_names", "varcomps_equal", "terms")),
    ("settings", SETTINGS_KEYS),
    ("estimates", ("beta", "nu")),
    ("loglike", ("loglike_value", "loglike_gradient", "loglike_hessian")),
    ("convergence", ("trust_converged", "iterations")),
    ("pql", ("beta_pql", "nu_pql", "u_pql")),
    ("importance_sampling", ("n_draws", "n_blocks", "block_sizes", "block_ess",
                             "score_mc_covariance", "top_log_weights",
                             "score_iid_covariance", "block_value_variance", "n_batches")),
    ("run", ("rounds", "timings", "m_path", "backend")),
)
#: Attributes added after RECORD_VERSION 2 first shipped: a record without them gets
#: the attribute's default.
_ADDED_LATER = frozenset({"backend", "score_iid_covariance", "block_value_variance",
                          "n_batches"})


def fit_attributes(
    *,
    design: Design,
    problem: Problem,
    family: Family,
    evaluation: Evaluation,
    theta: FloatArray,
    rounds: tuple[FitRound, ...],
    beta_pql: FloatArray,
    nu_pql: FloatArray,
    u_pql: FloatArray,
    settings: FitSettings,
    timings: dict[str, float],
    sample: MCLAObjective | None = None,
    backend: str = "serial",
) -> dict[str, Any]:
    """The attributes of :class:`GLMMResults` from the pieces of a fit (see ``from_fit``)."""
    return dict(
        beta=design.layout.beta(theta).copy(),
        nu=design.layout.psi(theta).copy(),
        loglike_value=evaluation.value,
        loglike_gradient=evaluation.gradient,
        loglike_hessian=evaluation.hessian,
        trust_converged=rounds[-1].converged,
        iterations=rounds[-1].iterations,
        beta_pql=np.asarray(beta_pql, dtype=np.float64),
        nu_pql=np.asarray(nu_pql, dtype=np.float64),
        u_pql=np.asarray(u_pql, dtype=np.float64),
        block_ess=evaluation.block_ess,
        score_mc_covariance=evaluation.score_mc_covariance,
        top_log_weights=evaluation.top_log_weights,
        score_iid_covariance=evaluation.score_iid_covariance,
        block_value_variance=evaluation.block_value_variance,
        n_batches=evaluation.n_batches,
        fixed_names=design.fixed_names,
        varcomps_names=design.varcomps_names,
        varcomps_equal=design.varcomps_equal,
        fixed_formula=design.fixed_formula,
        random_formulas=design.random_formulas,
        family=family,
        settings=settings,
        n_draws=evaluation.n_draws,
        n_blocks=problem.blocks.n_blocks,
        block_sizes=problem.blocks.block_sizes,
        rounds=rounds,
        timings=timings,
        terms=tuple(TermInfo.of(term, index) for term, index
                    in zip(design.random_terms, design.layout.term_index, strict=True)),
        design=design,
        sample=sample,
        backend=backend,
    )


def fit_record(fit: GLMMResults) -> dict[str, Any]:
    """The record of :meth:`GLMMResults.to_dict` (which documents its layout)."""
    record: dict[str, Any] = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
                              "versions": versions()}
    for section, names in RECORD_LAYOUT:
        if section == "settings":
            record[section] = fit.settings.to_dict()
        else:
            record[section] = {name: getattr(fit, name) for name in names}
    record["model"]["family"] = fit.family.name
    record["model"]["link"] = fit.family.link
    record["run"]["rounds"] = [dataclasses.asdict(r) for r in fit.rounds]
    record["model"]["terms"] = [dataclasses.asdict(t) for t in fit.terms]
    table = fit.tidy()
    record["inference"] = {
        "names": fit.param_names, "se": table["se"].to_numpy(),
        "mcse": table["mcse"].to_numpy(), "vcov": observed_covariance(fit.loglike_hessian),
        "block_pareto_k": fit.diagnostics().block_pareto_k,
    }
    return dict(encode(record))


def fit_values(
    cls: type[GLMMResults], record: dict[str, Any], fit_round: type[FitRound]
) -> dict[str, Any]:
    """Check a record of :func:`fit_record`; return the attributes to rebuild ``cls``.

    ``fit_round`` is the class of the sampling rounds (:class:`pyglmm.results.FitRound`).
    """
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ArgumentError(f"not a {RECORD_FORMAT} record")
    if record.get("format_version", 0) > RECORD_VERSION:
        raise ArgumentError(
            f"record format version {record['format_version']} is newer than this "
            f"pyglmm reads ({RECORD_VERSION}); upgrade pyglmm"
        )
    if record.get("format_version", 0) < RECORD_VERSION:
        raise ArgumentError(
            f"record format version {record.get('format_version')} does not hold every "
            "setting of its fit (pilot_m, shift, do_pql, rmax, iterlim, chunk_size, "
            f"na_action, par_init); this pyglmm reads version {RECORD_VERSION}. Refit and "
            "save the fit again"
        )
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for section, names in RECORD_LAYOUT:
        stored = record[section] if section == "model" else restore(record[section])
        if section == "settings":
            values["settings"] = FitSettings.from_dict(stored)
            continue
        for name in names:
            if name in _ADDED_LATER and name not in stored:
                continue
            values[name] = decode(types[name], stored.get(name), fit_round)
    return values


def decode(kind: str, value: Any, fit_round: type[FitRound]) -> Any:
    """Rebuild an attribute of annotated type ``kind`` from its JSON value."""
    if kind == "FloatArray":
        return np.asarray(value, dtype=np.float64)
    if kind == "FloatArray | None":
        return None if value is None else np.asarray(value, dtype=np.float64)
    if kind.startswith("NDArray"):
        return np.asarray(value, dtype=np.intp)
    if kind == "Family":
        return get_family(value)
    if kind == "tuple[FitRound, ...]":
        return tuple(_round_from_dict(r, fit_round) for r in value)
    if kind == "tuple[tuple[int, float, float], ...]":
        return tuple((int(a), float(b), float(c)) for a, b, c in (value or ()))
    if kind == "tuple[TermInfo, ...]" and value is None:
        return ()
    if kind == "tuple[TermInfo, ...]":
        return tuple(TermInfo(r["name"], r["formula"], tuple(r["columns"]), r["structure"],
                              tuple(int(i) for i in r["params"]), int(r["n_levels"]))
                     for r in value)
    if kind.startswith("tuple"):
        return tuple(value)
    scalar: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
    return scalar[kind](value) if kind in scalar else value


def versions() -> dict[str, str]:
    """Versions of pyglmm, Python, numpy, scipy and pandas, for the record."""
    try:
        ours = metadata.version("pyglmm")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return {"pyglmm": ours, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pandas": pd.__version__}


def encode(value: Any) -> Any:
    """Turn arrays, numpy scalars and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return encode(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number):
            return number
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    return value


def restore(value: Any) -> Any:
    """Inverse of :func:`encode` for the non-finite floats."""
    if isinstance(value, dict):
        return {k: restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore(v) for v in value]
    return _SPECIAL.get(value, value) if isinstance(value, str) else value


def _round_from_dict(data: dict[str, Any], fit_round: type[FitRound]) -> FitRound:
    trace = tuple(
        TrustStep(**(step | {"argument": np.asarray(step["argument"], dtype=np.float64),
                             "trial": np.asarray(step["trial"], dtype=np.float64)}))
        for step in data["trace"]
    )
    return fit_round(**(data | {"estimate": np.asarray(data["estimate"], dtype=np.float64),
                                "trace": trace}))


class RecordMethods:
    """The JSON record methods of :class:`pyglmm.GLMMResults` (see the module doc).

    The class using it names its round class in ``round_type``.
    """

    round_type: ClassVar[type]

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready record of the fit (no pickle; the design is not kept).

        ``format`` (``"pyglmm.GLMMResults"``), ``format_version`` and ``versions``
        (pyglmm, Python, numpy, scipy, pandas), then the attributes of the fit, each under
        its own name, in sections: ``model`` (formulas, family name, parameter names,
        ``varcomps_equal``, ``terms``: each random term's grouping factor, formula,
        columns, covariance structure and parameter positions), ``settings`` (every setting,
        :meth:`pyglmm.settings.FitSettings.to_dict`: ``m``, ``blocks``, ``importance``,
        ``recentre`` (``"auto"`` or an int), ``pilot_m``, ``shift``, ``do_pql``,
        ``p1``-``p3``, ``zeta``, ``zeta_per_block``, ``rmax``, ``iterlim``,
        ``chunk_size``, ``na_action``, ``par_init``, the seed's ``rng_entropy`` and
        ``rng_spawn_key``), ``estimates`` (``beta``, ``nu``), ``loglike``
        (``loglike_value``, ``loglike_gradient``, ``loglike_hessian``), ``convergence``
        (``trust_converged``, ``iterations``), ``pql`` (``beta_pql``, ``nu_pql``,
        ``u_pql``), ``importance_sampling`` (``n_draws``, ``n_blocks``, ``block_sizes``,
        ``block_ess``, ``score_mc_covariance``, ``top_log_weights``) and ``run``
        (``rounds``, with their trust traces, and ``timings`` in seconds). Derived, for
        readers, and recomputed on loading: ``model.link`` and ``inference`` (``names``,
        ``se``, ``mcse``, ``vcov``, ``block_pareto_k``). Vectors are lists in parameter
        order, matrices lists of rows; NaN and infinities are the strings ``"NaN"``,
        ``"Infinity"`` and ``"-Infinity"``, so the record is strict JSON and every float
        round-trips exactly.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.to_dict()["estimates"]["beta"] == fit.beta.tolist()
        True
        """
        return fit_record(self)  # type: ignore[arg-type]

    def to_json(self, indent: int | None = None) -> str:
        """The record of :meth:`to_dict` as strict JSON text.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> back = pg.GLMMResults.from_json(fit.to_json())
        >>> bool((back.params() == fit.params()).all())
        True
        """
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Any:
        """Rebuild a fit from :meth:`to_dict`'s record (without its design: no ``x``/``z``).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> pg.GLMMResults.from_dict(fit.to_dict()).nu.tolist() == fit.nu.tolist()
        True
        """
        return cls(**fit_values(cls, record, cls.round_type))  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Rebuild a fit from :meth:`to_json`'s text.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> pg.GLMMResults.from_json(fit.to_json()).loglik() == fit.loglik()
        True
        """
        return cls.from_dict(json.loads(text))
