"""Every relative link in README.md and docs/*.md points to a file that exists.

Links to web pages are not followed. A link with an anchor into a Markdown file must
name one of its headings (GitHub's anchors: lower case, punctuation dropped, spaces as
hyphens).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: ``[text](target)`` and ``![alt](target)``, target up to a space or ``)``.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    """Relative link targets of one Markdown page."""
    found = LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in found if not t.startswith(EXTERNAL)]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    out: set[str] = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            text = re.sub(r"[`*_]", "", heading.group(1)).lower()
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def test_the_pages_exist():
    assert (ROOT / "README.md").exists()
    assert {p.name for p in PAGES} >= {"README.md", "method.md", "architecture.md",
                                       "choosing-m.md", "from-r-glmm.md", "from-lme4.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor.lower() not in anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: broken links {broken}"


def test_link_pattern_finds_links_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [a](a.md), ![f](fig/x.png) and [w](https://example.org).\n"
                    "`[not](code.md)`\n```\n[nor](block.md)\n```\n", encoding="utf-8")
    assert links(page) == ["a.md", "fig/x.png"]
    assert anchors(ROOT / "docs" / "method.md") >= {"where-pyglmm-departs-from-r-glmm"}
