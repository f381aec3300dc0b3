"""Build the notebooks from their sources and run them, so the stored ones show real outputs.

    python notebooks/build.py              # every notebook: NN_name.py -> NN_name.ipynb, executed
    python notebooks/build.py 03 05        # only those whose name starts with 03 or 05
    python notebooks/build.py --no-execute # the cells only, without outputs (seconds)

Each notebook is written as a readable Python script in the percent format that VS Code,
Spyder and jupytext read: ``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell
whose lines are comments, and a magic such as ``%matplotlib inline`` is written commented out
(``# %matplotlib inline``), as jupytext writes it. Edit the ``.py`` file, never the ``.ipynb``.

The notebooks run with an empty HOME and the Hugging Face Hub offline, so the stored outputs are
those of the bundled ``tiny`` model on every machine, and rebuilding changes only what the code
changed: cell ids, execution counts and metadata are fixed, timings and widget ids left out.
A code cell tagged ``# %% tags=["picture"]`` gives the notebook's picture for docs/notebooks.md
(``docs/images/notebook_NN.png``, the cell's first PNG output).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGES = ROOT / "docs" / "images"
_CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")
_WIDGET = "application/vnd.jupyter.widget-view+json"
_MAGIC = re.compile(r"^# (%[a-z]\w*.*)$")  # "# %matplotlib inline" -> "%matplotlib inline"


# The same on every machine: the kernel's own language_info names its Python version.
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def sources() -> list[Path]:
    """The notebook sources, in reading order: notebooks/NN_name.py."""
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def parse(text: str) -> list[tuple[str, str, list[str]]]:
    """A percent-format script -> [(cell type, source, tags)]; text before the first cell
    marker (a module docstring) is left out."""
    cells: list[tuple[str, list[str], list[str]]] = []
    for line in text.splitlines():
        marker = _CELL.match(line)
        if marker:
            kind = "markdown" if marker["markdown"] else "code"
            cells.append((kind, [], json.loads(marker["tags"]) if marker["tags"] else []))
        elif cells:
            kind, lines, _tags = cells[-1]
            if kind == "markdown":
                lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
            else:
                magic = _MAGIC.match(line)
                lines.append(magic[1] if magic else line)
    return [(kind, "\n".join(lines).strip("\n"), tags) for kind, lines, tags in cells]


def notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of a source file, without outputs, with stable cell ids and metadata."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = nbformat.from_dict(METADATA)
    for i, (kind, text, tags) in enumerate(parse(source.read_text(encoding="utf-8"))):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(text, id=f"cell-{i:02d}")
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def kernel_env(home: Path) -> dict[str, str]:
    """The environment the notebooks run in: an empty HOME, no network for the Hub, one thread,
    and this checkout's gpt2lab first on the path (the installed one after ``pip install -e .``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(
        HOME=str(home),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(path),
        PYTHONHASHSEED="0",
        OMP_NUM_THREADS="1",  # the same sums in the same order on every machine, and no
    )  # threads fighting over a busy CPU
    return env


def execute(nb: nbformat.NotebookNode, env: dict[str, str], timeout: int = 900) -> None:
    """Run every cell in a fresh kernel started in notebooks/; raises on the first error."""
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
        record_timing=False,
    )
    client.execute(env=env)


def clean(nb: nbformat.NotebookNode) -> None:
    """Drop what changes from run to run: execution metadata, widgets (their state is not
    stored, and a code host cannot draw them) and where a printout happened to be cut into
    several stream outputs."""
    nb.metadata = nbformat.from_dict(METADATA)  # no widget state, no Python version
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        merged: list[nbformat.NotebookNode] = []
        for output in cell.get("outputs", []):
            previous = merged[-1] if merged else None
            if (
                output.output_type == "stream"
                and previous is not None
                and previous.output_type == "stream"
                and previous.name == output.name
            ):
                previous.text += output.text
            else:
                merged.append(output)
        if cell.cell_type == "code":
            cell.outputs = [o for o in merged if _WIDGET not in o.get("data", {})]


def picture(nb: nbformat.NotebookNode) -> bytes | None:
    """The PNG shown by the cell tagged "picture", if any."""
    for cell in nb.cells:
        if "picture" in cell.metadata.get("tags", []):
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    return base64.b64decode(output["data"]["image/png"])
    return None


def build(source: Path, home: Path | None) -> Path:
    """Write the .ipynb beside ``source`` and its picture; run it first with ``home`` as HOME
    (None: write the cells only, without outputs)."""
    nb = notebook(source)
    if home is not None:
        execute(nb, kernel_env(home))
        clean(nb)
        png = picture(nb)
        if png is not None:
            (IMAGES / f"notebook_{source.stem[:2]}.png").write_bytes(png)
    out = source.with_suffix(".ipynb")
    nbformat.validate(nb)
    out.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="build only notebooks whose name starts so")
    parser.add_argument("--no-execute", action="store_true", help="write cells without outputs")
    args = parser.parse_args(argv)
    chosen = [s for s in sources() if not args.only or s.name.startswith(tuple(args.only))]
    if not chosen:
        parser.error(f"no notebook starts with {' or '.join(args.only)}")
    # One empty HOME for the whole build: matplotlib builds its font cache there once.
    with tempfile.TemporaryDirectory(prefix="gpt2lab-notebooks-") as empty:
        for source in chosen:
            out = build(source, None if args.no_execute else Path(empty))
            print(f"{source.name} -> {out.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
