"""Every setting of a fit in one record: :class:`FitSettings`.

:func:`pyglmm.validation.check_settings` checks the arguments of :func:`pyglmm.glmm`
and returns them as a :class:`FitSettings`; the fit driver (:mod:`pyglmm.fitting`)
reads nothing else, and :class:`pyglmm.GLMMResults` keeps it whole (``fit.settings``)
and writes it in its JSON record. :meth:`FitSettings.glmm_arguments` gives the
arguments of :func:`pyglmm.glmm` that repeat the fit, number for number, on the same
model and data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Keys of :meth:`FitSettings.to_dict`, in order (the ``settings`` section of a record).
SETTINGS_KEYS: tuple[str, ...] = (
    "m", "blocks", "importance", "recentre", "pilot_m", "shift", "do_pql", "p1", "p2", "p3",
    "zeta", "zeta_per_block", "rmax", "iterlim", "chunk_size", "na_action", "par_init",
    "rng_entropy", "rng_spawn_key", "sampler",
)


@dataclass(frozen=True)
class FitSettings:
    """The settings of one fit, checked and with their effective values.

    Build it with :func:`pyglmm.validation.check_settings` (which checks every value);
    the constructor itself checks nothing.

    Attributes
    ----------
    m : int
        Monte Carlo sample size (per block) of the final round.
    blocks : {"independent", "joint"}
        Independent importance samples per block, or one joint sample.
    importance : {"laplace", "glmm"}
        The proposal.
    recentre : int or "auto"
        Number of pilot rounds, or ``"auto"`` (see :func:`pyglmm.glmm`).
    pilot_m : int
        Sample size of each pilot round (capped at ``m`` by the driver).
    shift : bool
        Whether the draws follow the fixed effects; the effective value (always false
        with ``importance="glmm"``, which has no shift).
    do_pql : bool
        Whether the first proposal is centred at the PQL estimates (without
        ``par_init``).
    p : tuple of float
        Mixture probabilities ``(p1, p2, p3)`` of the ``"glmm"`` proposal, rescaled to
        sum to 1.
    zeta : float
        Degrees of freedom of the t proposals (the default's base value when
        ``zeta_per_block``).
    zeta_per_block : bool
        The default Laplace t: ``max(zeta, d)`` degrees of freedom in a block of ``d``
        random effects.
    rmax : float
        Largest trust-region radius.
    iterlim : int
        Largest number of trust-region iterations per round.
    chunk_size : int or None
        Rows of the Monte Carlo sample processed at once (None: the default for the
        number of observations, :func:`pyglmm.parallel.default_chunk_size`).
    na_action : {"raise", "drop"}
        What missing values in a used column do.
    par_init : tuple of float or None
        The checked start ``(beta, nu)``, in parameter order, if one was given.
    rng_entropy : int or tuple of int
        Entropy of the root seed sequence of every random draw.
    rng_spawn_key : tuple of int
        Spawn key of that seed sequence.
    sampler : {"auto", "importance", "qmc", "mcmc"}
        How the random effects are drawn, as asked: importance sampling with independent
        draws, or with randomised quasi-Monte Carlo points (:mod:`pyglmm.qmc`), Markov
        chains (the MCMC likelihood, :mod:`pyglmm.chains`), or (``"auto"``) points where
        the largest block holds at most :data:`pyglmm.qmc.QMC_MAX_BLOCK` effects, chains
        where it holds at least :data:`pyglmm.chains.MCMC_MIN_BLOCK` (in those blocks
        only: :meth:`chained_blocks`), independent draws in between (:meth:`uses_chains`
        and :meth:`uses_qmc` give the effective choice).

    Examples
    --------
    >>> from pyglmm.validation import check_settings
    >>> settings = check_settings(m=500, blocks="independent", importance="laplace",
    ...                           recentre="auto", pilot_m=200, p=(1, 0, 0), zeta=20,
    ...                           rmax=1000, iterlim=100, chunk_size=None, rng=7)
    >>> settings.recentre, settings.auto_recentre, settings.seed_sequence().entropy
    ('auto', True, 7)
    >>> FitSettings.from_dict(settings.to_dict()) == settings
    True
    """

    m: int
    blocks: str
    importance: str
    recentre: int | str
    pilot_m: int
    shift: bool
    do_pql: bool
    p: tuple[float, float, float]
    zeta: float
    zeta_per_block: bool
    rmax: float
    iterlim: int
    chunk_size: int | None
    na_action: str
    par_init: tuple[float, ...] | None
    rng_entropy: int | tuple[int, ...]
    rng_spawn_key: tuple[int, ...]
    sampler: str = "auto"

    def uses_qmc(self, largest_block: int) -> bool:
        """Whether the rounds draw randomised quasi-Monte Carlo points (and not chains).

        With ``"auto"``: when the largest block holds at most
        :data:`pyglmm.qmc.QMC_MAX_BLOCK` effects and ``importance="laplace"``.
        """
        if self.sampler == "auto":
            from .qmc import QMC_MAX_BLOCK

            return self.importance == "laplace" and largest_block <= QMC_MAX_BLOCK
        return self.sampler == "qmc"

    def uses_chains(self, largest_block: int) -> bool:
        """Whether the rounds draw Markov chains for a largest block of this size."""
        if self.sampler == "auto":
            from .chains import MCMC_MIN_BLOCK

            return self.importance == "laplace" and largest_block >= MCMC_MIN_BLOCK
        return self.sampler == "mcmc"

    def chained_blocks(self, block_sizes: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which blocks a round of Markov chains draws by chains: every block with
        ``sampler="mcmc"``; with ``"auto"`` those of at least
        :data:`pyglmm.chains.MCMC_MIN_BLOCK` effects (the others get independent draws
        from the Laplace t, in the same sample)."""
        sizes = np.asarray(block_sizes)
        if self.sampler == "mcmc":
            return np.ones(sizes.shape, dtype=bool)
        from .chains import MCMC_MIN_BLOCK

        return sizes >= MCMC_MIN_BLOCK

    @property
    def auto_recentre(self) -> bool:
        """Whether the number of pilot rounds is chosen as the fit goes (``"auto"``)."""
        return self.recentre == "auto"

    def seed_sequence(self) -> np.random.SeedSequence:
        """The root seed sequence of the fit's draws (the chunks' streams spawn from it)."""
        entropy = self.rng_entropy if isinstance(self.rng_entropy, int) else list(
            self.rng_entropy
        )
        return np.random.SeedSequence(entropy, spawn_key=self.rng_spawn_key)

    def with_seed(self, seed: np.random.SeedSequence) -> FitSettings:
        """These settings with the root seed ``seed`` (its entropy and spawn key)."""
        return dataclasses.replace(
            self, rng_entropy=_entropy(seed.entropy), rng_spawn_key=_ints(seed.spawn_key)
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values, keyed by :data:`SETTINGS_KEYS`.

        ``p`` is written as ``p1``, ``p2``, ``p3``, tuples as lists, ``recentre`` as
        ``"auto"`` or an int.
        """
        p1, p2, p3 = self.p
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del values["p"]
        values |= {"p1": p1, "p2": p2, "p3": p3}
        values["par_init"] = None if self.par_init is None else list(self.par_init)
        values["rng_entropy"] = (self.rng_entropy if isinstance(self.rng_entropy, int)
                                 else list(self.rng_entropy))
        values["rng_spawn_key"] = list(self.rng_spawn_key)
        return {key: values[key] for key in SETTINGS_KEYS}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FitSettings:
        """Rebuild the settings from :meth:`to_dict`'s values (e.g. read from JSON).

        Raises
        ------
        KeyError
            A setting is missing.
        """
        recentre = values["recentre"]
        chunk = values["chunk_size"]
        start = values["par_init"]
        return cls(
            m=int(values["m"]),
            blocks=str(values["blocks"]),
            importance=str(values["importance"]),
            recentre="auto" if recentre == "auto" else int(recentre),
            pilot_m=int(values["pilot_m"]),
            shift=bool(values["shift"]),
            do_pql=bool(values["do_pql"]),
            p=(float(values["p1"]), float(values["p2"]), float(values["p3"])),
            zeta=float(values["zeta"]),
            zeta_per_block=bool(values["zeta_per_block"]),
            rmax=float(values["rmax"]),
            iterlim=int(values["iterlim"]),
            chunk_size=None if chunk is None else int(chunk),
            na_action=str(values["na_action"]),
            par_init=None if start is None else tuple(float(x) for x in start),
            rng_entropy=_entropy(values["rng_entropy"]),
            rng_spawn_key=_ints(values["rng_spawn_key"]),
            # records written before the MCMC likelihood existed used importance sampling
            sampler=str(values.get("sampler", "importance")),
        )

    def glmm_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`pyglmm.glmm` that repeat this fit exactly.

        Together with the model (formulas, data, family, ``varcomps_names``,
        ``varcomps_equal``) they give the same fit, bit for bit. The default Laplace t
        (``zeta_per_block``) is asked for as ``zeta=None``; ``p1``-``p3`` are the
        rescaled probabilities (rescaling them again changes nothing when they sum to 1
        exactly in floating point, as they do unless given far from summing to 1).

        Examples
        --------
        >>> import pyglmm as pg
        >>> data = pg.datasets.load_booth_hobert()
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, m=500, rng=1)
        >>> again = pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, **fit.settings.glmm_arguments())
        >>> bool((again.params() == fit.params()).all())
        True
        """
        p1, p2, p3 = self.p
        return {
            "m": self.m, "blocks": self.blocks, "importance": self.importance,
            "recentre": self.recentre, "pilot_m": self.pilot_m, "shift": self.shift,
            "do_pql": self.do_pql, "p1": p1, "p2": p2, "p3": p3,
            "zeta": None if self.zeta_per_block else self.zeta,
            "par_init": None if self.par_init is None else list(self.par_init),
            "rmax": self.rmax, "iterlim": self.iterlim, "chunk_size": self.chunk_size,
            "na_action": self.na_action, "rng": self.seed_sequence(),
            "sampler": self.sampler,
        }


class SettingsAttributes:
    """Read-only attributes of a fitted object that read its :class:`FitSettings`.

    A mixin for :class:`pyglmm.GLMMResults`: ``fit.m``, ``fit.importance``, ... are
    ``fit.settings.m``, ``fit.settings.importance``, ...; ``p1``-``p3`` are the items
    of ``settings.p``.
    """

    settings: FitSettings

    @property
    def m(self) -> int:
        """Monte Carlo sample size (per block) of the final round."""
        return self.settings.m

    @property
    def blocks(self) -> str:
        """``"independent"`` or ``"joint"``."""
        return self.settings.blocks

    @property
    def importance(self) -> str:
        """The proposal, ``"laplace"`` or ``"glmm"``."""
        return self.settings.importance

    @property
    def sampler(self) -> str:
        """How the random effects were to be drawn: ``"auto"``, ``"importance"``, ``"mcmc"``."""
        return self.settings.sampler

    @property
    def recentre(self) -> int | str:
        """Number of pilot rounds asked for, or ``"auto"``."""
        return self.settings.recentre

    @property
    def p1(self) -> float:
        """First mixture probability of the ``"glmm"`` proposal."""
        return self.settings.p[0]

    @property
    def p2(self) -> float:
        """Second mixture probability of the ``"glmm"`` proposal."""
        return self.settings.p[1]

    @property
    def p3(self) -> float:
        """Third mixture probability of the ``"glmm"`` proposal."""
        return self.settings.p[2]

    @property
    def zeta(self) -> float:
        """Degrees of freedom of the t proposals (the base value if ``zeta_per_block``)."""
        return self.settings.zeta

    @property
    def zeta_per_block(self) -> bool:
        """Whether the t proposal of a block of ``d`` effects has ``max(zeta, d)`` df."""
        return self.settings.zeta_per_block

    @property
    def rng_entropy(self) -> int | tuple[int, ...]:
        """Entropy of the fit's root seed sequence."""
        return self.settings.rng_entropy

    @property
    def rng_spawn_key(self) -> tuple[int, ...]:
        """Spawn key of the fit's root seed sequence."""
        return self.settings.rng_spawn_key


def _entropy(value: Any) -> int | tuple[int, ...]:
    """A seed's entropy as an int or a tuple of ints."""
    if isinstance(value, int | np.integer):
        return int(value)
    return _ints(value)


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
