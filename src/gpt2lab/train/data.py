"""Text files -> token memmaps for training: train.bin / val.bin (uint16) + meta.json.

Each document becomes its tokens followed by ``<|endoftext|>``, the separator GPT-2 was trained
with. A document goes to the validation split by a hash of its text, so the split does not depend
on file order and is the same every time. Work is committed in chunks: an interrupted
``prepare`` resumes where it stopped, and the final files appear only when it is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import OutputError, UsageError
from ..files import reason, write_atomic
from ..tokenizer import ENDOFTEXT, Tokenizer, get_tokenizer

FORMAT = "gpt2lab-tokens-v1"
SPLITS = ("train", "val")
# Texts shipped with the package (``--data shakespeare``): blank lines separate their speeches,
# runs of which make documents of about BUNDLED_DOCUMENT_CHARS (so that the model sees one
# speaker follow another); a tenth of the documents are held out.
BUNDLED_TEXTS = Path(__file__).resolve().parents[1] / "data" / "texts"
BUNDLED_DOCUMENT_CHARS = 2000
BUNDLED_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class TokenData:
    """A prepared data folder: ``train`` and ``val`` are read-only uint16 token arrays."""

    folder: Path
    meta: dict
    train: np.ndarray
    val: np.ndarray

    @classmethod
    def open(cls, folder: str | Path) -> TokenData:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise UsageError(
                f"{folder} is not a prepared data folder ({e}); run `gpt2lab prepare` first"
            ) from None
        if meta.get("format") != FORMAT:
            raise UsageError(f"{folder}/meta.json is not in the {FORMAT} format")
        arrays = {}
        for split in SPLITS:
            path = folder / f"{split}.bin"
            n = meta[f"{split}_tokens"]
            if not path.is_file() or path.stat().st_size != 2 * n:
                raise UsageError(f"{path} is missing or does not hold {n} tokens; prepare again")
            # (numpy cannot memory-map an empty file, e.g. with val_fraction=0)
            arrays[split] = (
                np.memmap(path, dtype=np.uint16, mode="r", shape=(n,))
                if n
                else np.zeros(0, np.uint16)
            )
        return cls(folder, meta, arrays["train"], arrays["val"])


def bundled_texts() -> list[str]:
    """Names of the texts shipped with gpt2lab, e.g. ``shakespeare``."""
    return sorted(path.stem for path in BUNDLED_TEXTS.glob("*.txt"))


def bundled_text(name: str) -> Path:
    """The file of a bundled text (``bundled_text("shakespeare")``), to read or to ``prepare``."""
    if name not in bundled_texts():
        raise UsageError(f"no bundled text {name!r}; there are: {', '.join(bundled_texts())}")
    return BUNDLED_TEXTS / f"{name}.txt"


def group_paragraphs(text: str, size: int) -> list[str]:
    """Consecutive blank-line separated paragraphs joined into documents of >= ``size`` chars
    (the last may be shorter): whole speeches, several to a document."""
    documents: list[str] = []
    current: list[str] = []
    for paragraph in split_documents(text, "\n\n"):
        current.append(paragraph)
        if sum(map(len, current)) >= size:
            documents.append("\n\n".join(current))
            current = []
    if current:
        documents.append("\n\n".join(current))
    return documents


def open_data(data: str | Path, run_dir: Path, *, prepare_here: bool = True) -> TokenData:
    """``--data``: a folder made by ``prepare``, or a bundled text's name.

    A bundled text is cut into documents of whole speeches, written to
    ``run_dir/bundled-data/NAME.txt`` (``<|endoftext|>`` between documents) and tokenized (GPT-2's
    tokenizer) into ``run_dir/bundled-data/NAME``, so a run needs no separate ``prepare``.
    ``prepare_here=False`` only opens it (DDP: one process writes). A folder of that name in the
    current directory wins over the bundled text.
    """
    folder = Path(data)
    if folder.exists():
        return TokenData.open(folder)
    if str(data) not in bundled_texts():
        raise UsageError(
            f"--data {data}: no such folder (make one with `gpt2lab prepare`), nor a bundled "
            f"text ({', '.join(bundled_texts())})"
        )
    prepared = run_dir / "bundled-data" / str(data)
    if prepare_here:
        text = bundled_text(str(data)).read_text(encoding="utf-8")
        documents = group_paragraphs(text, BUNDLED_DOCUMENT_CHARS)
        source = prepared.with_suffix(".txt")
        try:
            source.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(source, ENDOFTEXT.join(documents))
        except OSError as e:
            raise OutputError(f"cannot write {source}: {reason(e)}") from None
        prepare([source], prepared, val_fraction=BUNDLED_VAL_FRACTION, progress=False)
    return TokenData.open(prepared)


def split_documents(text: str, separator: str) -> Iterator[str]:
    """The non-empty documents of a text, split on ``separator`` (e.g. ``<|endoftext|>``)."""
    for doc in text.split(separator):
        doc = doc.strip("\n")
        if doc.strip():
            yield doc


def is_validation(doc: str, val_fraction: float) -> bool:
    """Whether a document is held out: decided by its hash, so by content alone."""
    digest = hashlib.blake2b(doc.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


def _fresh_state() -> dict:
    return {"file": 0, "doc": 0, "train_tokens": 0, "val_tokens": 0, "documents": [0, 0]}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


def prepare(
    files: list[str | Path],
    out: str | Path,
    *,
    train_only: Sequence[str | Path] = (),
    tokenizer: Tokenizer | None = None,
    tokenizer_name: str = "gpt2",
    separator: str = ENDOFTEXT,
    val_fraction: float = 0.05,
    chunk_documents: int = 2000,
    progress: bool = True,
) -> dict:
    """Tokenize ``files`` into ``out``/train.bin, val.bin and meta.json; return the meta dict.

    ``separator`` splits each file into documents (``<|endoftext|>`` by default; ``"\\n\\n"`` for
    blank-line separated text). Re-running after an interruption continues from the last
    committed chunk, as long as the inputs and settings are the same. Documents of the
    ``train_only`` files are never held out (e.g. extra or augmented text).
    """
    if not files:
        raise UsageError("prepare needs at least one text file")
    if not 0 <= val_fraction < 1:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not separator:
        raise UsageError("separator must not be empty (e.g. <|endoftext|>, or '\\n\\n')")
    paths = [Path(f) for f in [*files, *train_only]]
    holdout = [True] * len(files) + [False] * len(train_only)
    for path in paths:
        if not path.is_file():
            raise UsageError(f"no such text file: {path}")
    tokenizer = tokenizer or get_tokenizer()
    if tokenizer.vocab_size > 2**16:
        raise UsageError(f"vocabulary of {tokenizer.vocab_size} does not fit uint16 tokens")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the token files")
    try:
        return _prepare(
            paths,
            holdout,
            out,
            tokenizer,
            tokenizer_name,
            separator,
            val_fraction,
            chunk_documents,
            progress,
        )
    except OSError as e:
        raise OutputError(
            f"cannot write the token files in {out}: {reason(e)}; the work committed so "
            "far is kept: run the same command again to continue"
        ) from None


def _prepare(
    paths: list[Path],
    holdout: list[bool],
    out: Path,
    tokenizer: Tokenizer,
    tokenizer_name: str,
    separator: str,
    val_fraction: float,
    chunk_documents: int,
    progress: bool,
) -> dict:
    eot = tokenizer.eot_token
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "format": FORMAT,
        "tokenizer": tokenizer_name,
        "vocab_size": tokenizer.vocab_size,
        "eot_token": eot,
        "separator": separator,
        "val_fraction": val_fraction,
        "sources": [
            {"path": str(p), "bytes": p.stat().st_size, "held_out_share": val_fraction * h}
            for p, h in zip(paths, holdout)
        ],
    }
    progress_file = out / "progress.json"
    state = _fresh_state()
    if progress_file.exists():
        saved = json.loads(progress_file.read_text())
        if saved.get("settings") == settings:
            state = saved["state"]
    partial = {s: out / f"{s}.bin.partial" for s in SPLITS}
    sizes = {s: p.stat().st_size if p.exists() else 0 for s, p in partial.items()}
    if any(sizes[s] < 2 * state[f"{s}_tokens"] for s in SPLITS):
        state = _fresh_state()
    for split, path in partial.items():
        # Drop anything written after the last commit (an interrupted chunk).
        with open(path, "ab") as f:
            f.truncate(2 * state[f"{split}_tokens"])

    total_bytes = sum(p.stat().st_size for p in paths)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare", disable=not progress)
    with ExitStack() as stack:
        handles = {s: stack.enter_context(open(partial[s], "ab")) for s in SPLITS}
        stack.callback(bar.close)
        for file_index, path in enumerate(paths):
            text = _read_text(path)
            if file_index < state["file"]:
                bar.update(len(text.encode()))
                continue
            docs = list(split_documents(text, separator))
            start = state["doc"] if file_index == state["file"] else 0
            bar.update(round(len(text.encode()) * start / max(len(docs), 1)))
            for begin in range(start, len(docs), chunk_documents):
                chunk = docs[begin : begin + chunk_documents]
                buffers: dict[str, list[int]] = {s: [] for s in SPLITS}
                for doc in chunk:
                    held_out = holdout[file_index] and is_validation(doc, val_fraction)
                    split = "val" if held_out else "train"
                    ids = tokenizer.encode(doc, disallowed_special=())
                    buffers[split].extend([*ids, eot])
                    state["documents"][SPLITS.index(split)] += 1
                for split, ids in buffers.items():
                    handles[split].write(np.asarray(ids, dtype=np.uint16).tobytes())
                    handles[split].flush()
                    os.fsync(handles[split].fileno())
                    state[f"{split}_tokens"] += len(ids)
                state["file"], state["doc"] = file_index, begin + len(chunk)
                write_atomic(progress_file, json.dumps({"settings": settings, "state": state}))
                bar.update(round(len(text.encode()) * len(chunk) / len(docs)))
            state["file"], state["doc"] = file_index + 1, 0
    for split in SPLITS:
        os.replace(partial[split], out / f"{split}.bin")
    meta = {
        **settings,
        "train_tokens": state["train_tokens"],
        "val_tokens": state["val_tokens"],
        "train_documents": state["documents"][0],
        "val_documents": state["documents"][1],
    }
    write_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    progress_file.unlink()
    return meta
