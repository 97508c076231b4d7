"""``glmm()``: fit a generalized linear mixed model by Monte Carlo maximum likelihood.

This module checks the arguments and builds the design; the fit itself is
:func:`pyglmm.fitting.run_fit`. After the fit, :func:`_warn_after_fit` says what the
user should know about it.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from . import validation
from .automatic import check_auto, fit_until_precise
from .backends import get_backend
from .design import build_design
from .errors import ArgumentTypeError, ConvergenceError
from .events import FitEvent
from .families import Family, get_family
from .fitting import default_zeta, run_fit
from .results import GLMMResults


def glmm(
    fixed: str,
    random: str | Sequence[str] | None = None,
    data: Any = None,
    family: str | Family = "bernoulli",
    m: int | str = 10_000,
    *,
    mcse_target: float = 0.1,
    max_m: int = 1_000_000,
    offset: Any = None,
    weights: Any = None,
    varcomps_names: Sequence[str] | None = None,
    varcomps_equal: Sequence[int] | None = None,
    rng: int | np.random.SeedSequence | np.random.Generator | None = None,
    blocks: str = "independent",
    importance: str = "laplace",
    sampler: str = "auto",
    recentre: int | str = "auto",
    pilot_m: int = 2_000,
    shift: bool = True,
    do_pql: bool = True,
    p1: float = 1 / 3,
    p2: float = 1 / 3,
    p3: float = 1 / 3,
    zeta: float | None = None,
    par_init: Sequence[float] | None = None,
    rmax: float = 1000.0,
    iterlim: int = 1000,
    chunk_size: int | None = None,
    na_action: str = "raise",
    progress: bool | None = None,
    n_jobs: int | None = None,
    client: Any = None,
    callback: Callable[[FitEvent], object] | None = None,
) -> GLMMResults:
    r"""Fit a GLMM by maximising the Monte Carlo likelihood approximation (MCLA).

    The model: given random effects :math:`u \sim N_q(0, D(\psi))`, the responses are
    independent with canonical parameter

    .. math:: \eta = o + X\beta + Zu,

    ``o`` a known offset. ``D`` is block-diagonal over the levels of each random term:
    one variance per term (R glmm's variance components), one per column, or a full
    covariance of a term's intercept and slopes (:mod:`pyglmm.covariance`). The
    likelihood :math:`f_\theta(y) = \int f_\theta(y\mid u) f_\theta(u)\,du` (each
    observation's log-density times its weight, if ``weights`` are given) is
    approximated by importance sampling and maximised over
    :math:`\theta = (\beta, \psi)`, variances and covariances, with a trust-region
    method using the exact gradient and Hessian of the approximation
    (``docs/method.md``).

    Parameters
    ----------
    fixed : str
        Fixed-effects formula with the response on the left, e.g. ``"Mate ~ 0 + Cross"``.
        Binomial responses are written ``"cbind(successes, failures) ~ x"``.
        lme4-style random terms may be written in it instead of ``random``:
        ``"y ~ x + (1 + x | g)"`` (intercept and slope, correlated), ``(1 + x || g)``
        (uncorrelated), ``(0 + x | g)`` (a slope only), ``(1 | g1/g2)`` (nested),
        ``(1 | g1) + (1 | g2)`` (crossed); and offsets as ``offset(log(t))``.
    random : str or sequence of str, optional
        R glmm's random-effects formulas, one grouping factor each: ``["~ 0 + Female",
        "~ 0 + Male"]``; with a float column ``x``, ``"~ 0 + x:g"`` is a random slope per
        level of ``g`` with one variance. Grouping columns are factors whatever their
        dtype. Leave it out when the formula has lme4 terms.
    data : pandas.DataFrame or mapping
        The data (never modified).
    family : {"bernoulli", "poisson", "binomial"} or Family
        Response family, with its canonical link.
    m : int or "auto"
        Monte Carlo sample size (per block). ``"auto"`` starts at 1,000 draws and grows
        ``m`` by the square-root law, refitting from the previous estimate, until every
        parameter's MCSE/SE is at most ``mcse_target`` or ``m`` reaches ``max_m`` (then
        it warns); ``fit.m_path`` records each step (m, seconds, largest MCSE/SE).
    mcse_target, max_m : float, int
        The target and the cap of ``m="auto"``.
    offset : array-like or str, optional
        A known term added to the linear predictor (one value per row, or a column
        name); added to any ``offset(...)`` of the formula.
    weights : array-like or str, optional
        Non-negative prior weights (one per row, or a column name): each observation's
        conditional log-density is multiplied by its weight (R glmm's ``weights``);
        integer weights are the same as repeating rows.
    varcomps_names : sequence of str, optional
        Names of the variance components (default: the grouping factors' names).
    varcomps_equal : sequence of int, optional
        Variance component (1..T in order of first appearance) of each random formula;
        ``[1, 1]`` ties two formulas to one variance.
    rng : int, SeedSequence or Generator, optional
        Seed of every random draw; the same seed gives the same fit.
    blocks : {"independent", "joint"}
        ``"independent"`` factorises the MCLA over the independent blocks of the
        random-effect design (docs/method.md); ``"joint"`` uses one joint sample as
        R's glmm does.
    importance : {"laplace", "glmm"}
        Proposal: a per-block Student t centred at the conditional mode
        (docs/method.md), or R glmm's three-part mixture per block.
    sampler : {"auto", "importance", "qmc", "mcmc"}
        How the random effects are drawn. ``"importance"``: independent draws from the
        proposal of ``importance``. ``"qmc"``: randomised quasi-Monte Carlo, scrambled
        Sobol points pushed through each block's t proposal, with the spread between 8
        independent random digital shifts as Monte Carlo error (needs ``importance="laplace"``).
        ``"mcmc"``: the MCMC likelihood (Geyer 1994; docs/method.md) for large crossed
        blocks, where importance weights degenerate: Hamiltonian Markov chains draw the
        random effects given the data at each round's centre, their mean likelihood
        ratio approximates the likelihood's shape, bridge sampling its level, and the
        Monte Carlo errors come from the spread between independent chains
        (``fit.diagnostics()`` shows their effective sample size and R-hat).
        ``"auto"`` (default, with ``importance="laplace"``): ``"qmc"`` when every block
        holds at most 48 random effects; chains in the blocks of at least 200 effects
        and independent draws of the t in the other blocks, when there is such a block;
        independent draws otherwise. The choice of each round is in ``fit.rounds``.
    recentre : int or "auto"
        Number of pilot rounds before the final one. Each round maximises the MCLA of
        a fresh sample drawn from a proposal rebuilt at the previous round's estimate
        (Geyer 1994); the last round uses ``m`` draws. ``"auto"`` runs pilot rounds
        until the smallest per-block ESS at a pilot's estimate is at least 10% of its
        draws and the estimate is a stationary point of the pilot's MCLA (at most 4
        pilots, then at most 2 final rounds). Where the sample is degenerate (ESS below
        2% of the draws, typical of blocks of thousands of effects) re-centring stops
        as soon as it stops doubling the ESS, and the final round is not repeated; the
        fit then warns. ``0`` samples once, from the centre, as R does.
    pilot_m : int
        Sample size of every pilot round (at most ``m``).
    shift : bool
        With ``importance="laplace"``, let the draws move with the fixed effects,
        ``u_k(beta) = w_k + A (beta - beta_0)`` with ``A`` the slope of the conditional
        mode (an exact change of variables; see :class:`pyglmm.mcla.EffectShift`). This
        removes most of the Monte Carlo error where fixed and random effects are
        confounded. ``False`` keeps the draws fixed as R's glmm does.
    do_pql : bool
        Centre the first proposal at PQL estimates; if false at ``beta = 0, nu = 1``.
    p1, p2, p3 : float
        Mixture probabilities of the ``"glmm"`` proposal (sum 1, ``p1 > 0``).
    zeta : float, optional
        Degrees of freedom of the t proposals (real, positive), the same for every
        block. Default: 5 for ``importance="glmm"`` (R's default); for
        ``importance="laplace"``, ``max(20, d)`` for a block of ``d`` random effects
        (chosen by measurement, BENCHMARKS.md: heavy tails help small blocks and cost
        large ones).
    par_init : sequence of float, optional
        Start ``(beta, nu)``; skips PQL and centres the first proposal there.
    rmax : float
        Largest trust-region radius.
    iterlim : int
        Largest number of trust-region iterations per round.
    chunk_size : int, optional
        Rows of the Monte Carlo sample processed at once (memory is bounded by
        ``chunk_size x n``).
    na_action : {"raise", "drop"}
        Missing values in a used column raise an error, or their rows are dropped
        with a warning.
    progress : bool or None
        How standard error shows the fit's progress. ``None`` (the default): on a
        terminal, a live display (:mod:`pyglmm.progress`) once the fit has run about
        two seconds: the stage, the sample's chunks as they are drawn with the time
        left, each trust-region iteration's MCLA value and gradient norm; nothing
        when standard error is not a terminal. ``True``: that display at once on a
        terminal, and elsewhere one ``[pyglmm] ...`` line per stage: the PQL and
        Laplace centres (with their times), the start of each sampling round and every
        trust-region iteration. ``False``: nothing. The full iteration trace of every
        round is kept in ``fit.rounds[i].trace`` (R's ``debug`` output).
    n_jobs : int, optional
        Spread the Monte Carlo sample over this many local worker processes (``-1``:
        one per core; default 1, this process). Each worker draws its chunks from
        their own seed streams and keeps them, so the estimates are the same, bit for
        bit, for every ``n_jobs``; it pays from about ``m n = 10^7`` (a few seconds
        of sampling per round). The workers are started once per Python process; as
        with :mod:`multiprocessing`, a script that uses them must guard its entry
        point with ``if __name__ == "__main__":``.
    client : distributed.Client, optional
        Run on a dask cluster instead (``pip install "pyglmm[dask]"``): the chunks
        live on its workers for each round and only ``theta`` and small records cross
        the network. Same numbers as serial; a worker lost during the fit only costs
        time (its chunks are redrawn elsewhere).
    callback : callable, optional
        Called with every :class:`pyglmm.events.FitEvent` of the fit (the centres,
        each sampling round, every trust-region iteration, the end): for notebooks,
        logs or a display of one's own.

    Returns
    -------
    GLMMResults

    Examples
    --------
    >>> import pyglmm as pg
    >>> sal = pg.datasets.load_salamander()
    >>> fit = pg.glmm("Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
    ...               data=sal, family="bernoulli", m=2_000, rng=1234,
    ...               varcomps_names=["F", "M"])
    >>> fit.trust_converged
    True
    """
    backend = get_backend(n_jobs, client)
    if isinstance(m, str) and m == "auto":
        target, cap = check_auto(mcse_target, max_m)
        arguments = dict(
            varcomps_names=varcomps_names, varcomps_equal=varcomps_equal, rng=rng,
            blocks=blocks, importance=importance, sampler=sampler, recentre=recentre,
            pilot_m=pilot_m, shift=shift, do_pql=do_pql, p1=p1, p2=p2, p3=p3, zeta=zeta, rmax=rmax,
            iterlim=iterlim, chunk_size=chunk_size, na_action=na_action, progress=progress,
            offset=offset, weights=weights, n_jobs=n_jobs, client=client, callback=callback,
        )

        def fit_at(m_step: int, start: Any) -> GLMMResults:
            return glmm(fixed, random, data, family, m_step,
                        par_init=par_init if start is None else start, **arguments)

        return fit_until_precise(fit_at, target, cap, stacklevel=3)  # type: ignore[no-any-return]
    started = time.perf_counter()
    fam = get_family(family)
    settings = validation.check_settings(
        m=m, blocks=blocks, importance=importance, recentre=recentre, pilot_m=pilot_m,
        p=(p1, p2, p3), zeta=default_zeta(importance) if zeta is None else zeta, rmax=rmax,
        iterlim=iterlim, chunk_size=chunk_size, shift=shift, do_pql=do_pql,
        # the default Laplace t grows its degrees of freedom with the block
        zeta_per_block=zeta is None and importance == "laplace",
        na_action=na_action, rng=rng, sampler=sampler,
    )
    if data is None:
        raise ArgumentTypeError("data is required: a pandas DataFrame or a mapping of columns")
    design = build_design(
        fixed, random, data, fam, varcomps_names=varcomps_names,
        varcomps_equal=varcomps_equal, na_action=na_action, offset=offset, weights=weights,
    )
    theta_init = validation.check_par_init(par_init, design.param_names, design.n_fixed,
                                           design.layout)
    if theta_init is not None:
        settings = dataclasses.replace(settings, par_init=tuple(theta_init.tolist()))

    try:
        with threadpool_limits(limits=1, user_api="blas"):
            fit = run_fit(design, fam, settings, progress, started, backend=backend,
                          callback=callback)
    except np.linalg.LinAlgError as exc:
        raise ConvergenceError(
            f"a curvature matrix became numerically singular ({exc}); the linear predictor "
            "is probably extreme at the start. Give par_init with moderate fixed effects "
            "and positive variance components, or rescale the covariates."
        ) from None
    _warn_after_fit(fit)
    return fit


def _warn_after_fit(fit: GLMMResults) -> None:
    """Warn about each failed post-fit check (:mod:`pyglmm.checks`; the summary's WARNING
    block and ``fit.diagnostics().messages`` say the same); they point at glmm()'s call."""
    for check in fit.diagnostics().checks:
        warnings.warn(check.message, check.category, stacklevel=3)
