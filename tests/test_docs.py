"""Every page under docs/ runs as written: its Python examples are doctests with real output."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
EXAMPLE_PAGES = [p for p in PAGES if ">>> " in p.read_text(encoding="utf-8")]
CARD = ROOT / "src" / "gpt2lab" / "models" / "tiny" / "MODEL_CARD.md"
USER_FACING = [ROOT / "README.md", *PAGES, CARD]


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=[p.name for p in EXAMPLE_PAGES])
def test_page_examples(page, monkeypatch):
    monkeypatch.chdir(ROOT)  # pages read ../shared and docs/images relative to the repository
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert result.attempted > 0
    assert result.failed == 0


def test_every_page_is_in_the_readme_index():
    """A newcomer finds each page from the README's documentation table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = readme[readme.index("## Documentation") :]
    for page in PAGES:
        assert f"](docs/{page.name})" in index, page.name


@pytest.mark.parametrize("path", USER_FACING, ids=[p.name for p in USER_FACING])
def test_no_words_about_how_the_project_is_made(path):
    """User-facing text speaks of the user's machine, not of the developers' ones."""
    text = path.read_text(encoding="utf-8").lower()
    for phrase in ("our machines", "our development", "our test machines", "../shared", "session"):
        assert phrase not in text, f"{path.name}: {phrase!r}"


def test_license_and_changelog():
    """pyproject's licence is the LICENSE file's; the changelog names the package's version."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert f"## [{project['version']}]" in (ROOT / "CHANGELOG.md").read_text()


def test_docs_data_is_the_real_gpt2_tensor():
    """The W_P that docs/embeddings.md maps has the sha256 of GPT-2 124M's published one."""
    import hashlib

    table = (ROOT / "src" / "gpt2lab" / "data" / "gpt2-124M-sha256.tsv").read_text()
    published = next(line.split("\t")[1] for line in table.splitlines() if ".wpe." in line)
    data = (ROOT / "docs" / "data" / "gpt2-124M-wpe.f32le").read_bytes()
    assert hashlib.sha256(data).hexdigest() == published
