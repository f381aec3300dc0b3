"""The shipped excerpts (tests/data, gpt2lab/data/evals) are what their notes say: cut from the
published files exactly as tests/data/make_excerpts.py cuts them, with a licence note each."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import DATA, EVAL_SAMPLES, SHARED


def make_excerpts():
    """tests/data/make_excerpts.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_excerpts", DATA / "make_excerpts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHIPPED = sorted([*DATA.rglob("*.txt"), *(p for p in EVAL_SAMPLES.iterdir() if p.suffix != ".md")])


def test_excerpts_are_small_and_noted():
    assert sum(p.stat().st_size for p in SHIPPED) < 400_000
    notes = (DATA / "README.md").read_text() + (EVAL_SAMPLES / "README.md").read_text()
    for path in SHIPPED:
        assert path.name in notes, f"{path.name}: no source and licence note"


def test_prefix_at_keeps_whole_documents():
    text, eot = "a<|endoftext|>\nbb<|endoftext|>\nccc", "<|endoftext|>\n"
    assert make_excerpts().prefix_at(text, eot, 31) == "a<|endoftext|>\nbb<|endoftext|>\n"
    assert make_excerpts().prefix_at(text, eot, 30) == "a<|endoftext|>\n"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """The excerpts made again from ../shared/data, in a temporary folder."""
    if not (SHARED / "data").is_dir():
        pytest.skip("needs the full files in ../shared/data to rebuild the excerpts")
    module, root = make_excerpts(), tmp_path_factory.mktemp("excerpts")
    module.TESTS_DATA, module.EVAL_SAMPLES = root / "tests", root / "evals"
    module.main(SHARED / "data")
    return root


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_excerpt_is_cut_from_the_full_file(path, rebuilt):
    [again] = rebuilt.rglob(path.name)
    assert again.read_bytes() == path.read_bytes()
