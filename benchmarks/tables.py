"""Markdown tables for the benchmark scripts (no dependency beyond pandas)."""

from __future__ import annotations

import numbers

import pandas as pd


def _cell(value: object, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    return f"{float(value):.{digits}g}"


def markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A DataFrame as a Markdown table; floats to ``digits`` significant digits."""
    lines = ["| " + " | ".join(str(c) for c in table.columns) + " |",
             "|" + "---|" * table.shape[1]]
    lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)
