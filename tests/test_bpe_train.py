"""Tokenizer training: known merge lists, round trips, files, and training a model on its ids."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lab.cli import main
from gpt2lab.errors import UsageError
from gpt2lab.tokenizer import Tokenizer
from gpt2lab.train.bpe_train import count_words, learn_merges, train_tokenizer

CORPUS = ("The cat sat on the mat. The cat ate the rat. " * 20) + "Über naïve café 東京 🤗 12345"


def test_known_merge_list():
    # "aaabdaaabac": aa (4 times) first; then ab and aa|a tie at 2 and "a" < "aa" alphabetically,
    # so ab; then aa|ab (2 times).
    assert learn_merges(Counter({"aaabdaaabac": 1}), 3) == [("a", "a"), ("a", "b"), ("aa", "ab")]
    # Counts weigh in: "ab" three times beats "Ġab" once; spaces are the stand-in "Ġ".
    assert learn_merges(count_words(["ab ab ab ab"]), 2) == [("a", "b"), ("Ġ", "ab")]


def test_stops_when_nothing_is_left_to_merge():
    assert learn_merges(Counter({"ab": 5}), 10) == [("a", "b")]


def test_words_are_counted_the_gpt2_way():
    counts = count_words(["Mike is quick.<|endoftext|>Mike is"])
    assert counts == Counter({"Mike": 2, "Ġis": 2, "Ġquick": 1, ".": 1})


@pytest.fixture(scope="module")
def trained():
    return train_tokenizer([CORPUS], 290)


def test_trained_vocabulary_layout(trained):
    assert trained.vocab_size == 290
    assert trained.eot_token == 289
    assert trained.encoder["!"] == 0 and trained.encoder["Ġ"] == 220  # GPT-2's byte order
    first_merge = min(trained.merge_ranks, key=trained.merge_ranks.get)
    assert trained.encoder["".join(first_merge)] == 256
    assert len(trained.encode("The cat sat on the mat.")) < len("The cat sat on the mat.")
    assert trained.backend in ("tiktoken", "python")


@given(st.text(max_size=200))
@settings(max_examples=150, deadline=None)
def test_round_trip_on_any_text(trained, text):
    ids = trained.encode(text, disallowed_special=())
    assert all(0 <= i < trained.vocab_size for i in ids)
    assert trained.decode(ids) == text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def test_python_and_fast_backends_agree(trained):
    python = Tokenizer(trained.encoder, list(trained.merge_ranks), backend="python")
    pytest.importorskip("tiktoken")
    fast = Tokenizer(trained.encoder, list(trained.merge_ranks), backend="tiktoken")
    assert python.encode(CORPUS) == fast.encode(CORPUS)


def test_cli_writes_openai_files_that_load(tmp_path, capsys, trained):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    assert (
        main(
            ["train-tokenizer", str(corpus), "--vocab-size", "290", "--out", str(tmp_path / "tok")]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["encoder.json", "vocab.bpe"]
    loaded = Tokenizer.from_folder(tmp_path / "tok")
    assert loaded.encoder == trained.encoder
    assert loaded.encode(CORPUS) == trained.encode(CORPUS)
    assert (tmp_path / "tok" / "vocab.bpe").read_text().startswith("#version: 0.2\n")


def test_too_small_a_vocabulary():
    with pytest.raises(UsageError, match="257"):
        train_tokenizer(["abc"], 100)
