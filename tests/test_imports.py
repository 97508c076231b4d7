"""`import pyglmm` is cheap: the heavy modules load when a name is first used."""

from __future__ import annotations

import subprocess
import sys


def test_import_pyglmm_loads_nothing_heavy():
    code = ("import sys, pyglmm\n"
            "heavy = {'numpy', 'pandas', 'scipy', 'numba', 'formulaic'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            "assert sorted(pyglmm.__all__) == sorted(pyglmm._LAZY)\n"
            "from pyglmm import glmm, seed_check, datasets\n"
            "assert callable(glmm) and callable(seed_check) and 'numba' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
