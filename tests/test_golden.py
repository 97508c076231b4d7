"""Golden master: pyglmm's own fits must reproduce ``tests/golden/fits.json``.

Every case of the file is re-run from the call and data recipes stored in it, and every
number is compared with ``rtol=1e-10`` (``atol=1e-12`` for values near 0), so that any
change of pyglmm's numbers is seen. That holds on the arithmetic the file was made on
(numba's target CPU and OpenBLAS's kernels, the header's ``arithmetic``). On another CPU
the same code rounds differently, and the Laplace centre's and the trust region's
stopping rules carry that into the fits: measured between an AMD Zen 3 machine and the
one the file was first made on, up to 4e-7 relative in estimates, SEs and MCSEs and
5e-6 absolute in gradients at the optimum (which are 0 up to the stopping rule). There
the comparison is ``rtol=1e-5``, ``atol=1e-5``: still a thousandth of the smallest
Monte Carlo error of these fits, so any change of the sample or the algorithm is seen.

When a change is intended, regenerate the file with
``python tests/golden/regenerate.py`` and say why in CHANGELOG.md.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
import scipy

import pyglmm as pg

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
RTOL = 1e-10
ATOL = 1e-12
OTHER_CPU_RTOL = 1e-5
OTHER_CPU_ATOL = 1e-5
MAX_REPORTED = 15


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("golden_regenerate",
                                                  GOLDEN_DIR / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()
GOLDEN = json.loads(SCRIPT.GOLDEN_FILE.read_text())
GOLDEN_CASES = {case["name"]: case for case in GOLDEN["cases"]}
SAME_ARITHMETIC = GOLDEN["header"].get("arithmetic") == SCRIPT.arithmetic()
if not SAME_ARITHMETIC:
    RTOL, ATOL = OTHER_CPU_RTOL, OTHER_CPU_ATOL

HOW_TO_UPDATE = (
    "If this change of pyglmm's numbers is intended, run `python tests/golden/regenerate.py`, "
    "commit tests/golden/fits.json and say why in CHANGELOG.md."
)


def _versions() -> str:
    h = GOLDEN["header"]
    return (
        f"golden file made {h['date']} with pyglmm {h['pyglmm']}, numpy {h['numpy']}, "
        f"scipy {h['scipy']}, numba {h['numba']}; now pyglmm {pg.__version__}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}; "
        f"arithmetic {h.get('arithmetic')!r}, now {SCRIPT.arithmetic()!r}"
    )


def _close(actual: float, expected: float, rtol: float, atol: float) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    if math.isinf(expected) or math.isinf(actual):
        return actual == expected
    return abs(actual - expected) <= atol + rtol * abs(expected)


def compare(actual: Any, expected: Any, path: str = "", rtol: float | None = None,
            atol: float | None = None) -> list[str]:
    """Every difference between two JSON-like trees, as readable lines.

    Tolerances default to this run's (``RTOL``, ``ATOL``: strict on the file's arithmetic).
    """
    rtol = RTOL if rtol is None else rtol
    atol = ATOL if atol is None else atol
    where = path or "<root>"
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            keys = sorted(actual) if isinstance(actual, dict) else type(actual).__name__
            return [f"{where}: keys {keys}, golden {sorted(expected)}"]
        return [line for key in expected
                for line in compare(actual[key], expected[key], f"{path}.{key}", rtol, atol)]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            size = len(actual) if isinstance(actual, list) else type(actual).__name__
            return [f"{where}: length {size}, golden {len(expected)}"]
        return [line for i, (a, e) in enumerate(zip(actual, expected, strict=True))
                for line in compare(a, e, f"{path}[{i}]", rtol, atol)]
    numbers = (int, float)
    if (isinstance(expected, float) or isinstance(actual, float)) and \
            isinstance(expected, numbers) and isinstance(actual, numbers) and \
            not isinstance(expected, bool) and not isinstance(actual, bool):
        if _close(float(actual), float(expected), rtol, atol):
            return []
        scale = abs(expected) if expected else 1.0
        return [f"{where}: {actual!r}, golden {expected!r} "
                f"(relative difference {abs(actual - expected) / scale:.3g})"]
    if actual != expected or type(actual) is not type(expected):
        return [f"{where}: {actual!r}, golden {expected!r}"]
    return []


def _failure(name: str, problems: list[str]) -> str:
    shown = "\n  ".join(problems[:MAX_REPORTED])
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED \
        else ""
    return (
        f"golden case {name!r}: {len(problems)} value(s) differ from tests/golden/fits.json "
        f"beyond rtol={RTOL:g}, atol={ATOL:g}:\n  {shown}{more}\n{HOW_TO_UPDATE}\n"
        f"({_versions()})"
    )


def test_golden_file_matches_the_script():
    """The stored cases and data recipes are the script's (else the file is stale)."""
    stored = {case["name"]: case["call"] for case in GOLDEN["cases"]}
    script = {case["name"]: case["call"] for case in SCRIPT.CASES}
    problems = compare(script, stored, "cases") + compare(SCRIPT.DATA, GOLDEN["data"], "data")
    problems += compare(list(SCRIPT.BY_NAME), GOLDEN["by_name"], "by_name")
    assert not problems, (
        "tests/golden/regenerate.py and tests/golden/fits.json disagree on the cases:\n  "
        + "\n  ".join(problems[:MAX_REPORTED])
        + "\nRun `python tests/golden/regenerate.py` (and say why in CHANGELOG.md)."
    )


@pytest.mark.parametrize("name", list(GOLDEN_CASES))
def test_golden_fit(name: str):
    case = GOLDEN_CASES[name]
    results, raised, _ = SCRIPT.run_case(case["call"], GOLDEN["data"])
    problems = compare(raised, case["warnings"], "warnings")
    problems += compare(results, case["results"], "results")
    assert not problems, _failure(name, problems)


def test_compare_sees_differences():
    """The comparison itself: tolerances, NaN, structure and labels."""
    golden = {"a": [1.0, 0.0, float("nan")], "b": "x", "n": 2}
    strict = {"rtol": 1e-10, "atol": 1e-12}
    assert compare({"a": [1.0 + 1e-12, 1e-13, float("nan")], "b": "x", "n": 2}, golden,
                   **strict) == []
    assert len(compare({"a": [1.0 + 1e-9, 0.0, float("nan")], "b": "x", "n": 2}, golden,
                       **strict)) == 1
    assert len(compare({"a": [1.0, 1e-11, 0.0], "b": "y", "n": 3}, golden, **strict)) == 4
    assert compare({"a": [1.0], "b": "x", "n": 2}, golden, **strict) == [
        ".a: length 1, golden 3"]
    other_cpu = {"rtol": OTHER_CPU_RTOL, "atol": OTHER_CPU_ATOL}
    assert compare({"a": [1.0 + 4e-7, 5e-6, float("nan")]}, {"a": golden["a"]},
                   **other_cpu) == []
    assert len(compare({"a": [1.0 + 1e-3, 0.0, float("nan")]}, {"a": golden["a"]},
                       **other_cpu)) == 1
