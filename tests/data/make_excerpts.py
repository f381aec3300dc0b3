"""Rebuild the shipped excerpts from the full files (a ../shared folder beside the repository).

    python tests/data/make_excerpts.py [SHARED_DATA_DIR]

Writes tests/data/tinystories/* (test data) and src/gpt2lab/data/evals/* (the evaluation samples
gpt2lab falls back to offline). Every excerpt is the start of its file, cut at a document
boundary, except held_out.txt, which is the documents of the 2 MiB sample that the bundled
``tiny`` model never trained on. tests/data/README.md says where each full file comes from.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS_DATA = ROOT / "tests" / "data"
EVAL_SAMPLES = ROOT / "src" / "gpt2lab" / "data" / "evals"
EOT = "<|endoftext|>"


def prefix_at(text: str, separator: str, limit: int) -> str:
    """The longest start of ``text`` that ends with ``separator`` and has at most ``limit``
    characters: whole documents only."""
    end = text.rfind(separator, 0, limit)
    return text[: end + len(separator)]


def held_out_documents(text: str) -> str:
    """The held-out stories (5% by hash, as recipes/tiny split them), joined as in the file."""
    sys.path.insert(0, str(ROOT / "src"))
    from gpt2lab.train.data import is_validation

    docs = [d.strip("\n") for d in text.split(EOT) if d.strip()]
    return f"\n{EOT}\n".join(d for d in docs if is_validation(d, 0.05)) + "\n"


def main(shared: Path) -> None:
    stories = (shared / "train" / "tinystories" / "tinystories_sample_2M.txt").read_text()
    lowercased = (
        shared / "train" / "tinystories" / "tinystories_slice_4M_lowercased.txt"
    ).read_text()
    lambada = (shared / "eval" / "lambada" / "lambada_test.jsonl").read_text()
    wiki = (shared / "eval" / "wikitext-2" / "wiki.test.tokens").read_text()
    outputs = {
        TESTS_DATA / "tinystories" / "first_100k.txt": prefix_at(stories, f"{EOT}\n", 100_000),
        TESTS_DATA / "tinystories" / "held_out.txt": held_out_documents(stories),
        TESTS_DATA / "tinystories" / "lowercased_first_20k.txt": prefix_at(
            lowercased, "\n\n", 20_000
        ),
        EVAL_SAMPLES / "lambada_test_first300.jsonl": "".join(lambada.splitlines(True)[:300]),
        EVAL_SAMPLES / "wikitext2_test_first3.tokens": "".join(wiki.splitlines(True)[:177]),
    }
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"{path}: {len(text.encode()):,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
