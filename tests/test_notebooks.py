"""The notebooks in notebooks/ run without error, offline, on an empty HOME, and the stored ones
are their sources' cells with the outputs of one run from top to bottom."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("notebook_build", ROOT / "notebooks" / "build.py")
assert _spec is not None and _spec.loader is not None
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = build.sources()
NAMES = [s.stem for s in SOURCES]
TRAINING = "06_training_a_small_gpt"  # trains its own model: it loads none


def test_the_notebooks():
    assert NAMES == [
        "01_tokens_and_embeddings",
        "02_one_block",
        "03_attention_and_logit_lens",
        "04_choosing_the_next_token",
        "05_looking_for_a_circuit",
        "06_training_a_small_gpt",
        "07_evaluating_like_the_paper",
        "08_gpt2_vs_llama",
    ]


def test_parse_percent_format():
    text = (
        '"""docstring, not a cell"""\n\n# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n'
        '# %% tags=["picture"]\n# %matplotlib inline\nx = 1  # a comment\n\n# %%\nx\n'
    )
    assert build.parse(text) == [
        ("markdown", "# Title\n\nSome *text*.", []),
        ("code", "%matplotlib inline\nx = 1  # a comment", ["picture"]),
        ("code", "x", []),
    ]


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_stored_notebook_is_its_source_run(source):
    """Same cells as the source now builds; every code cell ran once, in order, and shows
    something; no error, no warning, nothing that changes from run to run."""
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    nbformat.validate(stored)
    fresh = build.notebook(source)
    assert [(c.id, c.cell_type, c.source) for c in stored.cells] == [
        (c.id, c.cell_type, c.source) for c in fresh.cells
    ], f"{source.name} changed: run python notebooks/build.py {source.name[:2]}"
    assert stored.metadata == fresh.metadata
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    for cell in code:
        kinds = [(o.output_type, o.get("name")) for o in cell.outputs]
        assert kinds, f"{cell.id} shows nothing"
        assert ("error", None) not in kinds, cell.id
        assert ("stream", "stderr") not in kinds, f"{cell.id} wrote to stderr"
        assert "execution" not in cell.metadata
    if source.stem != TRAINING:  # offline, with an empty HOME: the bundled model
        assert code[0].outputs[0]["text"].startswith("model: tiny")


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_docs_picture_is_the_notebooks(source):
    """docs/notebooks.md shows each notebook's picture, cut from its stored outputs."""
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    image = build.IMAGES / f"notebook_{source.stem[:2]}.png"
    assert build.picture(stored) == image.read_bytes()
    page = (ROOT / "docs" / "notebooks.md").read_text(encoding="utf-8")
    assert f"(../notebooks/{source.stem}.ipynb)" in page
    assert f"(images/{image.name})" in page


def _kinds(cell) -> list[tuple[str, ...]]:
    """What a code cell shows: each output's type and its stream or MIME types."""
    return [
        (o.output_type, *([o.name] if o.output_type == "stream" else sorted(o.get("data", {}))))
        for o in cell.outputs
    ]


@pytest.fixture(scope="module")
def matplotlib_cache(tmp_path_factory):
    """One font cache for every kernel: an empty HOME would build it again in each."""
    return tmp_path_factory.mktemp("mplconfig")


# The default run executes one notebook, the block step by step; the others run with the slow
# tests (CI runs those too), since each costs a kernel and a model load.
EVERY_RUN = {"02_one_block"}


@pytest.mark.parametrize(
    "source",
    [s if s.stem in EVERY_RUN else pytest.param(s, marks=pytest.mark.slow) for s in SOURCES],
    ids=NAMES,
)
def test_notebook_runs(source, tmp_path, matplotlib_cache):
    """Every cell runs (nbclient raises CellExecutionError at the first error), with no network
    and nothing in HOME, so on the bundled model."""
    nb = build.notebook(source)
    env = build.kernel_env(tmp_path) | {"MPLCONFIGDIR": str(matplotlib_cache)}
    build.execute(nb, env)
    build.clean(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code)
    # The stored notebook shows the same kinds of output, cell by cell (the numbers may differ
    # in their last digits from one CPU to another, so they are not compared).
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    stored_code = [c for c in stored.cells if c.cell_type == "code"]
    assert [_kinds(c) for c in code] == [_kinds(c) for c in stored_code]
    if source.stem != TRAINING:
        assert code[0].outputs[0]["text"].startswith("model: tiny")
