"""`prepare`: documents -> uint16 token files, a content-hashed held-out split, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gpt2lab
from gpt2lab.errors import UsageError
from gpt2lab.train.data import TokenData, is_validation, prepare

STORIES = [
    f"Story {i}: Tom saw a {['cat', 'dog', 'bird'][i % 3]} and said hi {i} times."
    for i in range(60)
]


@pytest.fixture
def corpus(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("<|endoftext|>".join(STORIES[:40]), encoding="utf-8")
    b = tmp_path / "b.txt"
    b.write_text("\n<|endoftext|>\n".join(STORIES[40:]), encoding="utf-8")
    return a, b


def _documents(tokens: np.ndarray) -> list[str]:
    tok = gpt2lab.get_tokenizer()
    text = tok.decode(tokens.tolist())
    assert text.endswith("<|endoftext|>")
    return text.split("<|endoftext|>")[:-1]


def test_prepare_writes_every_document_once(corpus, tmp_path):
    meta = prepare(list(corpus), tmp_path / "data", val_fraction=0.25, progress=False)
    data = TokenData.open(tmp_path / "data")
    train, val = _documents(data.train), _documents(data.val)
    assert sorted(train + val) == sorted(STORIES)
    assert val == [s for s in STORIES if is_validation(s, 0.25)]  # chosen by content alone
    assert 5 <= len(val) <= 25
    assert meta["train_tokens"] == len(data.train) and meta["val_tokens"] == len(data.val)
    assert (meta["train_documents"], meta["val_documents"]) == (len(train), len(val))
    tok = gpt2lab.get_tokenizer()
    first = [*tok.encode(train[0]), 50256]
    assert data.train[: len(first)].tolist() == first
    assert data.train.dtype == np.uint16
    assert not (tmp_path / "data" / "progress.json").exists()


def test_train_only_files_are_never_held_out(corpus, tmp_path):
    a, b = corpus
    prepare([a], tmp_path / "data", train_only=[b], val_fraction=0.5, progress=False)
    val = _documents(TokenData.open(tmp_path / "data").val)
    assert val and not set(val) & set(STORIES[40:])


def test_blank_line_separator(tmp_path):
    f = tmp_path / "paras.txt"
    f.write_text("first doc\n\nsecond doc\n\n\nthird doc\n")
    prepare([f], tmp_path / "data", separator="\n\n", val_fraction=0.0, progress=False)
    assert _documents(TokenData.open(tmp_path / "data").train) == [
        "first doc",
        "second doc",
        "third doc",  # newlines at a document's edges are dropped
    ]


def test_an_interrupted_prepare_resumes_to_the_same_files(corpus, tmp_path, monkeypatch):
    prepare(list(corpus), tmp_path / "whole", chunk_documents=7, progress=False)
    tok = gpt2lab.get_tokenizer()
    calls = {"n": 0}
    real_encode = tok.encode

    def failing_encode(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-way
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(tok, "encode", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        prepare(
            list(corpus), tmp_path / "resumed", tokenizer=tok, chunk_documents=7, progress=False
        )
    progress = json.loads((tmp_path / "resumed" / "progress.json").read_text())
    assert progress["state"]["doc"] == 28  # four chunks of 7 were committed
    assert not (tmp_path / "resumed" / "meta.json").exists()  # no result until complete
    monkeypatch.setattr(tok, "encode", real_encode)
    prepare(list(corpus), tmp_path / "resumed", tokenizer=tok, chunk_documents=7, progress=False)
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()


def test_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="no such text file"):
        prepare([tmp_path / "missing.txt"], tmp_path / "out", progress=False)
    with pytest.raises(UsageError, match="gpt2lab prepare"):
        TokenData.open(tmp_path)
    with pytest.raises(UsageError, match="val_fraction"):
        prepare([tmp_path], tmp_path / "out", val_fraction=1.5, progress=False)
