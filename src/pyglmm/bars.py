"""lme4-style random terms and offsets in the right-hand side of a formula.

An R formula such as ``y ~ x + (1 + x | g) + offset(log(t))`` mixes three things:
fixed-effect terms for :mod:`formulaic`, random-effect "bar" terms ``(expr | g)``
(lme4's notation, ``||`` for uncorrelated effects) and offsets. The functions here
take such a right-hand side apart as pure string processing:

* :func:`split_bars` removes the bar terms and describes each as a :class:`BarTerm`
  (nesting ``g1/g2`` expanded to ``g1`` and ``g1:g2`` as lme4 does);
and :mod:`pyglmm.offsets` removes the ``offset(expr)`` terms and evaluates
expressions of columns. What is left is the fixed right-hand side for formulaic, with
the text of its terms as written. Mistakes raise
:class:`~pyglmm.errors.FormulaError` naming the formula and the term, and saying what
to write instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ArgumentTypeError, FormulaError

if TYPE_CHECKING:
    pass

__all__ = ["BarTerm", "split_bars"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_IDENT_END = re.compile(r"[A-Za-z0-9_.`\])]$")
_OFFSET = re.compile(r"^offset\s*\(")
_OFFSET_ANYWHERE = re.compile(r"(?<![A-Za-z0-9_.])offset\s*\(")
_GROUPING_HELP = (
    "the grouping part after '|' may be a column name (in backticks if it has spaces "
    "or symbols), an interaction 'g1:g2' or a nesting 'g1/g2'"
)
#: How many row labels an error about non-finite values lists.
_LABELS_SHOWN = 5


@dataclass(frozen=True)
class BarTerm:
    """One random-effect term ``(covariates | grouping)`` of a formula.

    Attributes
    ----------
    text : str
        The term as written after expansion of nesting, whitespace normalised,
        e.g. ``"(1 + x | g)"`` or ``"(1 | g1:g2)"``.
    covariates : str
        The formulaic right-hand side of the term's columns: ``"1 + x"``, ``"1"``,
        ``"0 + x"``; ``"x"`` keeps its implicit intercept.
    grouping : tuple of str
        The grouping columns, backticks stripped: ``("g",)``, or ``("g1", "g2")`` for
        the interaction ``g1:g2``.
    correlated : bool
        ``True`` for ``|`` (correlated effects), ``False`` for ``||``.
    """

    text: str
    covariates: str
    grouping: tuple[str, ...]
    correlated: bool


@dataclass(frozen=True)
class _Piece:
    """One additive term of a right-hand side: its text and where it lies."""

    text: str  # as written, stripped
    start: int  # where the text (unstripped) starts in the right-hand side
    end: int  # one past its end
    operator: str  # "+", "-" or "" (first term without a sign)
    operator_at: int  # position of the operator, or start when there is none


def _scan(text: str, formula: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """Yield ``(position, character, open parentheses)`` outside quotes and backticks.

    The open parentheses are a tuple of ``"call"`` (the parenthesis of a function call
    such as ``log(``) and ``"group"`` (a plain grouping parenthesis), innermost last;
    the parentheses themselves are reported at the depth outside them.
    """
    stack: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote != "`":
                i += 2
                continue
            if char == quote:
                quote = ""
            i += 1
            continue
        if char in "`'\"":
            quote = char
        elif char == "(":
            yield i, char, tuple(stack)
            before = text[:i].rstrip()
            stack.append("call" if before and _IDENT_END.search(before) else "group")
            i += 1
            continue
        elif char == ")":
            if not stack:
                raise FormulaError(
                    f"formula {formula!r} has a ')' without a matching '(' in "
                    f"{text.strip()!r}; check the parentheses"
                )
            stack.pop()
        yield i, char, tuple(stack)
        i += 1
    if quote:
        raise FormulaError(
            f"formula {formula!r} has an unclosed {quote} in {text.strip()!r}; close it"
        )
    if stack:
        raise FormulaError(
            f"formula {formula!r} has a '(' without a matching ')' in {text.strip()!r}; "
            "check the parentheses"
        )


def _normalise_space(text: str) -> str:
    """Collapse runs of whitespace outside quotes and backticks to one space; strip."""
    out: list[str] = []
    quote = ""
    escaped = False
    for char in text:
        if quote:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\" and quote != "`":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "`'\"":
            quote = char
        if char.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            continue
        out.append(char)
    return "".join(out).strip()


def _split_terms(rhs: str, formula: str) -> list[_Piece]:
    """The additive terms of a right-hand side, split at top-level ``+`` and ``-``."""
    pieces: list[_Piece] = []
    start, operator, operator_at = 0, "", 0
    for i, char, stack in _scan(rhs, formula):
        if not stack and char in "+-":
            pieces.append(_make_piece(rhs, start, i, operator, operator_at))
            start, operator, operator_at = i + 1, char, i
    pieces.append(_make_piece(rhs, start, len(rhs), operator, operator_at))
    if not pieces[-1].text and pieces[-1].operator:
        raise FormulaError(
            f"formula {formula!r} ends with {pieces[-1].operator!r}; remove it or add "
            "the missing term"
        )
    return pieces


def _make_piece(rhs: str, start: int, end: int, operator: str, operator_at: int) -> _Piece:
    return _Piece(rhs[start:end].strip(), start, end, operator, operator_at if operator else start)


def _signs(pieces: list[_Piece], k: int) -> tuple[int, str]:
    """Where term ``k`` starts with its operators, and those operators.

    A term after unary operators (``x + -(1 | g)``) follows empty terms; their
    operators belong to it.
    """
    at, operators = pieces[k].operator_at, pieces[k].operator
    while k > 0 and not pieces[k - 1].text and pieces[k - 1].operator:
        k -= 1
        at, operators = pieces[k].operator_at, pieces[k].operator + operators
    return at, operators


def _remove_pieces(rhs: str, removed: list[tuple[int, int]]) -> str:
    """The right-hand side without the given ``(start, end)`` spans, cleaned."""
    kept: list[str] = []
    position = 0
    for start, end in removed:
        kept.append(rhs[position:start])
        position = end
    kept.append(rhs[position:])
    rest = _normalise_space("".join(kept))
    if rest.startswith("+"):
        rest = rest[1:].strip()
    return rest or "1"


def _wrapped(text: str, formula: str) -> bool:
    """Whether the whole text is one parenthesised group ``( ... )``."""
    if not text.startswith("(") or not text.endswith(")"):
        return False
    for i, char, stack in _scan(text, formula):
        if char == ")" and not stack:
            return i == len(text) - 1
    return False  # pragma: no cover - a balanced text starting with '(' closes it


def _top_level_bars(text: str, formula: str) -> list[int]:
    """Positions of the ``|`` characters outside any parentheses of the text."""
    return [i for i, char, stack in _scan(text, formula) if char == "|" and not stack]


def _check_no_bar(text: str, formula: str, where: str) -> None:
    """Refuse a ``|`` in the text that is not inside a function call's parentheses."""
    stacks = [stack for _, char, stack in _scan(text, formula) if char == "|"]
    if any(not stack for stack in stacks):
        raise FormulaError(
            f"formula {formula!r} has a '|' outside parentheses in {where}; a "
            "random-effect term is written in parentheses as its own term of the "
            "sum, e.g. 'y ~ x + (1 | g)' (or '(1 + x | g)')"
        )
    if any("call" not in stack for stack in stacks):
        raise FormulaError(
            f"formula {formula!r} has a random-effect bar '|' inside {where}; a "
            "random-effect term '(expr | g)' must be a term of its own in the sum, "
            "e.g. 'y ~ x + (1 | g)', not part of an interaction, power or group"
        )


def _grouping_atom(atom: str, term: str, formula: str) -> tuple[str, str]:
    """One grouping column: ``(name, as written)``, refusing anything but a name."""
    atom = atom.strip()
    if len(atom) > 2 and atom.startswith("`") and atom.endswith("`") and "`" not in atom[1:-1]:
        return atom[1:-1], atom
    if _NAME.match(atom):
        return atom, atom
    shown = atom if atom else "nothing"
    raise FormulaError(
        f"random-effect term {term!r} of formula {formula!r} has {shown!r} in its "
        f"grouping part, which is not a column name; {_GROUPING_HELP}"
    )


def _groupings(part: str, term: str, formula: str) -> list[tuple[tuple[str, ...], str]]:
    """The groupings of a bar term's grouping part, nesting ``a/b`` expanded."""
    part = part.strip()
    if not part:
        raise FormulaError(
            f"random-effect term {term!r} of formula {formula!r} has no grouping column "
            f"after '|'; {_GROUPING_HELP}"
        )
    outside = re.sub(r"`[^`]*`", "_", part)
    if "(" in outside or ")" in outside:
        raise FormulaError(
            f"random-effect term {term!r} of formula {formula!r} has parentheses or "
            f"a function call in its grouping part {part!r}; {_GROUPING_HELP}"
        )
    odd = re.search(r"[^A-Za-z0-9_.:/\s`]", outside)
    if odd:
        raise FormulaError(
            f"random-effect term {term!r} of formula {formula!r} has {odd.group()!r} in "
            f"its grouping part {part!r}; {_GROUPING_HELP} (write one bar term per "
            "grouping factor, e.g. '(1 | g1) + (1 | g2)')"
        )
    segments = _split_outside_backticks(part, "/")
    result: list[tuple[tuple[str, ...], str]] = []
    names: list[str] = []
    written: list[str] = []
    for segment in segments:
        for atom in _split_outside_backticks(segment, ":"):
            name, shown = _grouping_atom(atom, term, formula)
            names.append(name)
            written.append(shown)
        result.append((tuple(names), ":".join(written)))
    return result


def _split_outside_backticks(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    inside = False
    current: list[str] = []
    for c in text:
        if c == "`":
            inside = not inside
        if c == sep and not inside:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _bar_inner(text: str, formula: str) -> str | None:
    """The inside of a bar term ``( ... | ... )`` (redundant parentheses removed)."""
    while _wrapped(text, formula):
        inner = text[1:-1].strip()
        if _top_level_bars(inner, formula):
            return inner
        text = inner
    return None


def _parse_bar(piece: _Piece, inner: str, formula: str) -> list[BarTerm]:
    term = piece.text
    bars = _top_level_bars(inner, formula)
    at = bars[0]
    double = len(bars) > 1 and bars[1] == at + 1
    if len(bars) > (2 if double else 1):
        raise FormulaError(
            f"random-effect term {term!r} of formula {formula!r} has more than one bar "
            "'|'; write one term per grouping factor, e.g. '(1 | g1) + (1 | g2)'"
        )
    covariates = _normalise_space(inner[:at])
    grouping_part = inner[at + (2 if double else 1):]
    if not covariates:
        raise FormulaError(
            f"random-effect term {term!r} of formula {formula!r} has nothing before "
            "'|'; write the random effects' columns there, e.g. '(1 | g)' for a random "
            "intercept or '(1 + x | g)' for a random slope too"
        )
    _check_no_bar(covariates, formula, f"the random-effect term {term!r}")
    _check_offset_not_nested(
        covariates, formula,
        f"formula {formula!r} has an offset in the random-effect term {term!r}; an "
        "offset belongs to the fixed part, as a term of its own: 'y ~ x + offset(log(t)) "
        "+ (1 | g)'",
    )
    bar = "||" if double else "|"
    return [
        BarTerm(f"({covariates} {bar} {written})", covariates, names, not double)
        for names, written in _groupings(grouping_part, term, formula)
    ]


def _check_rhs(rhs: str, formula: str) -> None:
    if not isinstance(rhs, str):
        raise ArgumentTypeError(
            f"the right-hand side of formula {formula!r} must be a string, "
            f"not {type(rhs).__name__}"
        )
    if not rhs.strip():
        raise FormulaError(f"formula {formula!r} has no right-hand side (use '~ 1')")


def split_bars(rhs: str, formula: str) -> tuple[str, tuple[BarTerm, ...]]:
    """Remove lme4 bar terms '(expr | g)' / '(expr || g)' from a formula RHS.

    Parameters
    ----------
    rhs : str
        The right-hand side of a formula (the part after ``~``).
    formula : str
        The whole formula, named in error messages.

    Returns
    -------
    fixed : str
        The right-hand side without the bar terms, the other terms as written:
        ``"1"`` when nothing is left, ``"0"`` for ``"0 + (1 | g)"``.
    terms : tuple of BarTerm
        The bar terms in order of appearance; nesting ``(expr | g1/g2)`` gives the two
        terms ``(expr | g1)`` and ``(expr | g1:g2)``.

    Raises
    ------
    FormulaError
        For a ``|`` outside a parenthesised bar term, a bar term after ``-``, an empty
        covariate part, or a grouping part that is not made of column names joined by
        ``:`` or ``/``.

    Examples
    --------
    >>> fixed, terms = split_bars("x + (1 + x | g) + (1 || a/b)", "y ~ ...")
    >>> fixed
    'x'
    >>> [(t.text, t.grouping, t.correlated) for t in terms]  # doctest: +NORMALIZE_WHITESPACE
    [('(1 + x | g)', ('g',), True), ('(1 || a)', ('a',), False),
     ('(1 || a:b)', ('a', 'b'), False)]
    """
    _check_rhs(rhs, formula)
    pieces = _split_terms(rhs, formula)
    removed: list[tuple[int, int]] = []
    terms: list[BarTerm] = []
    for k, piece in enumerate(pieces):
        inner = _bar_inner(piece.text, formula)
        if inner is None:
            _check_no_bar(piece.text, formula, f"the term {piece.text!r}")
            continue
        at, operators = _signs(pieces, k)
        if "-" in operators:
            raise FormulaError(
                f"formula {formula!r} subtracts the random-effect term {piece.text!r}; "
                "random-effect terms cannot be removed with '-', write '+ "
                f"{piece.text}' or leave the term out"
            )
        terms.extend(_parse_bar(piece, inner, formula))
        removed.append((at, piece.end))
    if not removed:
        return rhs.strip(), ()
    return _remove_pieces(rhs, removed), tuple(terms)


def _check_offset_not_nested(text: str, formula: str, message: str = "") -> None:
    """Refuse ``offset(`` outside function calls in a term that is not an offset."""
    for match in _OFFSET_ANYWHERE.finditer(text):
        at = match.start()
        stack: tuple[str, ...] | None = None
        for i, _, inside in _scan(text, formula):
            if i == at:
                stack = inside
                break
        if stack is None or "call" in stack:
            continue  # in quotes or backticks, or an argument of another function
        raise FormulaError(
            message
            or f"formula {formula!r} has an offset inside the term {text!r}; an offset "
            "must be a term of its own in the sum, e.g. 'y ~ x + offset(log(t))'"
        )
