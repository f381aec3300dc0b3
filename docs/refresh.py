"""Rewrite the expected outputs of a Markdown file's doctests with what the code prints now.

The docs show real output. When the output changes for a good reason (the bundled model was
retrained), run this instead of editing numbers by hand, then read the diff:

    python docs/refresh.py docs/walkthrough.md [more.md ...]

Examples whose output still matches are left exactly as written (so ``...`` ellipses and
hand-trimmed tracebacks survive); only failing ones get the new output.
"""

from __future__ import annotations

import doctest
import sys
from pathlib import Path


class _Recorder(doctest.DocTestRunner):
    def __init__(self) -> None:
        super().__init__(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        self.got: dict[int, str] = {}

    def report_failure(self, out, test, example, got) -> None:
        self.got[id(example)] = got

    def report_unexpected_exception(self, out, test, example, exc_info) -> None:
        raise exc_info[1]


def refresh(path: Path) -> int:
    """Rewrite ``path`` in place; return how many examples changed."""
    text = path.read_text()
    parts = doctest.DocTestParser().parse(text, str(path))
    test = doctest.DocTest(
        [p for p in parts if isinstance(p, doctest.Example)], {}, path.name, str(path), 0, None
    )
    runner = _Recorder()
    runner.run(test, out=lambda _s: None, clear_globs=True)
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        pad = " " * part.indent
        lines = part.source.rstrip("\n").split("\n")
        prompts = [">>> "] + ["... "] * (len(lines) - 1)
        out.append("".join(f"{pad}{p}{line}\n" for p, line in zip(prompts, lines)))
        want = runner.got.get(id(part), part.want)
        out.append("".join(f"{pad}{line or '<BLANKLINE>'}\n" for line in want.splitlines()))
    path.write_text("".join(out))
    return len(runner.got)


def main() -> None:
    for name in sys.argv[1:]:
        print(f"{name}: {refresh(Path(name))} examples updated")


if __name__ == "__main__":
    main()
