"""Every page under docs/ runs as written: its Python examples are doctests with real output.

A few examples read whole files from ``../shared`` (GPT-2 124M's position embeddings, a full
test set), which only a checkout with that folder beside it has. Each page runs without those
code blocks everywhere; the whole page runs, too, where ``../shared`` is.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n.*?^```$", re.S | re.M)
NEEDS_SHARED = "../shared/"


def without_shared_blocks(text: str) -> str:
    """``text`` with each Python block that reads ../shared blanked (line numbers kept)."""

    def blank(block: re.Match) -> str:
        code = block.group()
        return "\n" * code.count("\n") if NEEDS_SHARED in code else code

    return PYTHON_BLOCK.sub(blank, text)


def run_examples(page: Path, text: str) -> doctest.TestResults:
    """Run the doctests in ``text`` (``page``'s, maybe with blocks left out), as doctest.testfile
    would: cwd at the repository root, where pages find docs/images (and ../shared)."""
    test = doctest.DocTestParser().get_doctest(
        text, {"__name__": "__main__"}, page.name, str(page), 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = run_examples(page, without_shared_blocks(page.read_text()))
    assert result.attempted > 0
    assert result.failed == 0


SHARED_PAGES = [p for p in PAGES if NEEDS_SHARED in p.read_text()]


@pytest.mark.parametrize("page", SHARED_PAGES, ids=[p.name for p in SHARED_PAGES])
def test_page_examples_on_the_full_files(page, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip("needs the full files in ../shared (not shipped)")
    monkeypatch.chdir(ROOT)
    result = run_examples(page, page.read_text())
    assert result.attempted > 0
    assert result.failed == 0


def test_blocks_that_read_shared_are_left_out_whole():
    page = "a\n\n```python\n>>> 1\n1\n\n```\n\n```python\n>>> open('../shared/x')\n\n```\nb\n"
    kept = without_shared_blocks(page)
    assert kept.count("\n") == page.count("\n")
    assert ">>> 1" in kept and "../shared" not in kept and kept.endswith("b\n")
