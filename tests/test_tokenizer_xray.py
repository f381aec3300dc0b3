"""Tokenizer X-ray: ``Tokenizer.trace`` shows the merges ``encode`` makes, and gives its ids.

Ranks are checked against the lines of OpenAI's ``vocab.bpe`` (bundled) read here, and the ids
against ``encode`` (tiktoken when installed, so an independent implementation).
"""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from conftest import BUNDLED_TOKENIZER, stories

from gpt2lab.cli import main
from gpt2lab.errors import TokenizerError
from gpt2lab.tokenizer import get_tokenizer, merge_pair, pretokenize


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


@pytest.fixture(scope="module")
def file_ranks() -> dict[tuple[str, str], int]:
    """Merge rank = line number in vocab.bpe, counting from 0 after the #version line."""
    lines = (BUNDLED_TOKENIZER / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#version")  # only the first line: "# #" is a merge too
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    return {pair: rank for rank, pair in enumerate(merges)}


def check_word(trace, file_ranks) -> None:
    """Each merge joins the lowest-ranked adjacent pair, and no merge is left at the end."""
    assert trace.start == tuple(trace.symbols)
    parts = list(trace.start)
    for step in trace.merges:
        candidates = [p for p in pairwise(parts) if p in file_ranks]
        assert step.pair == min(candidates, key=file_ranks.__getitem__)
        assert step.rank == file_ranks[step.pair]
        parts = merge_pair(parts, step.pair)
        assert step.parts == tuple(parts)
    assert not any(p in file_ranks for p in pairwise(parts))
    assert trace.pieces == tuple(parts)


def test_shawshank(tok, file_ranks):
    (trace,) = tok.trace(" Shawshank")
    assert trace.word == " Shawshank"
    assert trace.symbols == "ĠShawshank"
    assert trace.start == ("Ġ", "S", "h", "a", "w", "s", "h", "a", "n", "k")
    assert trace.pieces == ("ĠShaw", "sh", "ank")
    assert list(trace.ids) == tok.encode(" Shawshank") == [18193, 1477, 962]
    assert trace.merges[-1].pair == ("ĠSh", "aw")
    assert not trace.special
    check_word(trace, file_ranks)


def test_the_starts_with_the_first_merge_of_vocab_bpe(tok, file_ranks):
    assert file_ranks[("Ġ", "t")] == 0
    (trace,) = tok.trace(" the")
    assert (trace.merges[0].pair, trace.merges[0].rank) == (("Ġ", "t"), 0)
    assert trace.merges[0].parts == ("Ġt", "h", "e")
    assert trace.pieces == ("Ġthe",)
    assert list(trace.ids) == tok.encode(" the")
    check_word(trace, file_ranks)


def test_single_byte_word_has_no_merges(tok):
    (trace,) = tok.trace(".")
    assert trace.merges == ()
    assert trace.start == trace.pieces == (".",)
    assert trace.ids == (13,)


def test_corpus_words_trace_to_the_encoded_ids(tok, file_ranks):
    text = stories()
    words = list(dict.fromkeys(pretokenize(text)))[:400]
    assert len(words) == 400
    for word in words:
        (trace,) = tok.trace(word)
        assert trace.word == word
        assert list(trace.ids) == tok.encode(word), word
        check_word(trace, file_ranks)
    passage = text[:5_000]
    traces = tok.trace(passage, allowed_special="all")  # the stories are split by <|endoftext|>
    assert any(t.special for t in traces)
    assert "".join(t.word for t in traces) == passage
    assert [i for t in traces for i in t.ids] == tok.encode(passage, allowed_special="all")


def test_special_token_is_one_entry_when_allowed(tok):
    text = "The end.<|endoftext|>Once"
    traces = tok.trace(text, allowed_special="all")
    special = [t for t in traces if t.special]
    assert len(special) == 1
    assert special[0].ids == (50256,)
    assert special[0].merges == ()
    assert special[0].start == special[0].pieces == ("<|endoftext|>",)
    assert [i for t in traces for i in t.ids] == tok.encode(text, allowed_special="all")
    with pytest.raises(TokenizerError, match="disallowed special token"):
        tok.trace(text)


def test_to_dict_is_json(tok):
    (trace,) = tok.trace(" the")
    data = json.loads(json.dumps(trace.to_dict(), ensure_ascii=False))
    assert data == {
        "word": " the",
        "symbols": "Ġthe",
        "start": ["Ġ", "t", "h", "e"],
        "merges": [
            {"pair": ["Ġ", "t"], "rank": 0, "parts": ["Ġt", "h", "e"]},
            {"pair": ["h", "e"], "rank": 2, "parts": ["Ġt", "he"]},
            {"pair": ["Ġt", "he"], "rank": 6, "parts": ["Ġthe"]},
        ],
        "pieces": ["Ġthe"],
        "ids": [262],
        "special": False,
    }


# --- the command ------------------------------------------------------------------------------
def test_cli_trace_json(capsys, tok):
    text = "Mike saw Shawshank.<|endoftext|>"
    assert main(["tokenize", text, "--trace", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ids = tok.encode(text, allowed_special="all")
    assert data["ids"] == ids
    assert data["tokens"] == [tok.id_to_token(i) for i in ids]
    words = ["Mike", " saw", " Shawshank", ".", "<|endoftext|>"]
    assert [t["word"] for t in data["trace"]] == words
    assert [i for t in data["trace"] for i in t["ids"]] == ids
    shawshank = data["trace"][2]
    assert shawshank["pieces"] == ["ĠShaw", "sh", "ank"]
    assert shawshank["merges"][-1] == {
        "pair": ["ĠSh", "aw"],
        "rank": 17937,
        "parts": ["ĠShaw", "sh", "ank"],
    }
    assert data["trace"][-1]["special"] is True


def test_cli_json_without_trace_is_unchanged(capsys):
    assert main(["tokenize", " Shawshank", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"ids", "tokens"}


def test_cli_trace_table(capsys):
    assert main(["tokenize", " Shawshank", "--trace"]) == 0
    out = capsys.readouterr().out
    for expected in ("ĠShawshank", "7 merges", "17937", "ĠSh + aw", "ĠShaw=18193", "ank=962"):
        assert expected in out
