"""Our byte-level BPE against known ids and an independent tiktoken build of the same files.

The reference is tiktoken's own code path (``data_gym_to_mergeable_bpe_ranks`` + tiktoken's
regex), built offline from the two OpenAI files bundled in the package (checked against their
published md5); it shares nothing with ``gpt2lab.tokenizer`` except those files. Our "python"
backend is the reference implementation, so it must give exactly the same ids on real text (the
excerpts in tests/data and the package's evaluation samples; whole corpora when ../shared is
beside the repository) and on random text.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest
from conftest import BUNDLED_TOKENIZER, DATA, EVAL_SAMPLES, shared_path
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lab.errors import TokenizerError
from gpt2lab.evals.data import read_lambada
from gpt2lab.tokenizer import Tokenizer, bytes_to_unicode, get_tokenizer, pretokenize

# OpenAI's GPT-2 files (models/124M), byte for byte: what the reference is built from.
OPENAI_MD5 = {
    "encoder.json": "dffec25a898b1f5e569bec4dffd7e5c0",
    "vocab.bpe": "75a37753dd7a28a2c5df80c28bf06e4e",
}
REFERENCE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
BACKENDS = ["python", "tiktoken"]

KNOWN = {
    "Mike is quick. He moves": [16073, 318, 2068, 13, 679, 6100],
    " Shawshank": [18193, 1477, 962],
    "Hello, world!": [15496, 11, 995, 0],
}

# Whole files, under ../shared/data (skipped without it).
CORPORA = {
    "wikitext-103-test": ("eval", "wikitext-103", "wiki.test.tokens"),
    "tinystories-2M": ("train", "tinystories", "tinystories_sample_2M.txt"),
    "tinystories-4M-lowercased": ("train", "tinystories", "tinystories_slice_4M_lowercased.txt"),
}
# Their starts, shipped: the same kinds of text on every checkout.
EXCERPTS = {
    "wikitext-2-test-start": EVAL_SAMPLES / "wikitext2_test_first3.tokens",
    "lambada-test-start": EVAL_SAMPLES / "lambada_test_first300.jsonl",
    "tinystories-start": DATA / "tinystories" / "first_100k.txt",
    "tinystories-held-out": DATA / "tinystories" / "held_out.txt",
    "tinystories-lowercased-start": DATA / "tinystories" / "lowercased_first_20k.txt",
}


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference():
    """tiktoken's GPT-2 encoding, built by tiktoken itself from OpenAI's files."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    folder = BUNDLED_TOKENIZER
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(folder / "vocab.bpe"),
        encoder_json_file=str(folder / "encoder.json"),
    )
    return tiktoken.Encoding(
        name="gpt2-ref",
        pat_str=REFERENCE_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
        explicit_n_vocab=50257,
    )


@pytest.fixture(scope="module")
def python_tok() -> Tokenizer:
    tok = get_tokenizer("python")
    assert tok.backend == "python"
    return tok


def _tokenizer(backend: str) -> Tokenizer:
    if backend == "tiktoken":
        pytest.importorskip("tiktoken")
    tok = get_tokenizer(backend)
    assert tok.backend == backend
    return tok


@pytest.fixture(params=BACKENDS)
def tok(request) -> Tokenizer:
    return _tokenizer(request.param)


# --- known cases ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "ids"), KNOWN.items(), ids=list(KNOWN))
def test_known_ids(tok, text, ids):
    assert tok.encode(text) == ids
    assert tok.encode_ordinary(text) == ids
    assert tok.decode(ids) == text


def test_known_tokens_and_specials(tok):
    assert [tok.id_to_token(i) for i in tok.encode(" Shawshank")] == ["ĠShaw", "sh", "ank"]
    assert tok.token_bytes(6100) == b" moves"
    assert tok.encode(EOT, allowed_special="all") == [50256]
    assert tok.encode(EOT, allowed_special={EOT}) == [50256]
    assert tok.encode(f"a{EOT}b", allowed_special="all") == [64, 50256, 65]
    assert tok.decode([50256]) == EOT
    assert tok.eot_token == 50256
    assert tok.vocab_size == 50257


def test_bytes_to_unicode():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert table[32] == "Ġ"
    assert table[10] == "Ċ"
    assert table[ord("A")] == "A"  # printable ASCII maps to itself
    assert all(not c.isspace() and c.isprintable() for c in table.values())


def test_pretokenize():
    assert pretokenize("Mike is quick.") == ["Mike", " is", " quick", "."]
    assert pretokenize("I'll") == ["I", "'ll"]
    assert pretokenize("we're here, they've 42 cats") == [
        "we", "'re", " here", ",", " they", "'ve", " 42", " cats",
    ]  # fmt: skip
    # A run of spaces keeps its last space for the next word.
    assert pretokenize("go   now") == ["go", "  ", " now"]


def test_bpe_merges_a_word(python_tok):
    word = python_tok.word_to_unicode(" Shawshank")
    assert word == "ĠShawshank"
    assert python_tok.bpe(word) == ["ĠShaw", "sh", "ank"]


# --- parity with tiktoken on real text ----------------------------------------------------------
def _assert_same_ids(ours: Tokenizer, reference, text: str, label: str) -> None:
    """Whole-text ids must match; on failure, name the first line whose ids differ."""
    expected = reference.encode(text, allowed_special="all")
    got = ours.encode(text, allowed_special="all")
    if got != expected:
        lines = text.splitlines(keepends=True)
        for n, line in enumerate(lines, 1):
            want = reference.encode(line, allowed_special="all")
            have = ours.encode(line, allowed_special="all")
            if have != want:
                pytest.fail(
                    f"{label} ({ours.backend} backend): ids differ first on line {n}: "
                    f"{line!r}\n  reference: {want}\n  ours:      {have}"
                )
        # Every line matches alone: the difference spans a line break (e.g. whitespace runs).
        first = next(
            (i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
            min(len(got), len(expected)),
        )
        offset = len(reference.decode(expected[:first]))
        line_no = text.count("\n", 0, offset) + 1
        pytest.fail(
            f"{label} ({ours.backend} backend): every line matches alone, but the whole text "
            f"differs at id {first}, line {line_no}, near {text[offset - 30 : offset + 30]!r}"
            f"\n  reference: {expected[first : first + 8]}\n  ours:      {got[first : first + 8]}"
        )
    assert ours.decode(got) == text, f"{label}: decode(encode(text)) != text"


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_ids_as_tiktoken_on_whole_corpora(reference, backend, corpus):
    text = shared_path(*CORPORA[corpus]).read_text(encoding="utf-8")
    assert len(text) > 1_000_000
    if corpus == "tinystories-2M":
        assert EOT in text  # its documents are separated by <|endoftext|>
    _assert_same_ids(_tokenizer(backend), reference, text, corpus)


def excerpt_text(path) -> str:
    """An excerpt's text: LAMBADA's passages (one JSON object per line) joined, else the file."""
    if path.suffix == ".jsonl":
        return "\n\n".join(read_lambada(path))
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("excerpt", EXCERPTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_ids_as_tiktoken_on_shipped_excerpts(reference, backend, excerpt):
    text = excerpt_text(EXCERPTS[excerpt])
    assert len(text) > 19_000
    _assert_same_ids(_tokenizer(backend), reference, text, excerpt)


def test_reference_is_built_from_openais_files():
    for name, md5 in OPENAI_MD5.items():
        assert hashlib.md5((BUNDLED_TOKENIZER / name).read_bytes()).hexdigest() == md5, name


# --- parity on random text --------------------------------------------------------------------
MIXED_PIECES = [
    " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "\u200b",
    "0", "7", "42", "٣", "½",
    "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "’", "'S", "'LL",
    "a", "Z", "é", "e\u0301", "\u0301", "\u0308", "ß", "ﬁ", "ǅ", "İ",
    "🤗", "🦄", "👍🏽", "👨‍👩‍👧", "🇫🇷", "\ufe0f",
    "東", "京", "日本語", "한국어", "ไทย", "עברית", "العربية",
    ".", ",", "!", "?", "-", '"', "<|", "|>", "$", "\x00", "\x7f", "\ufffd",
]  # fmt: skip
MIXED = st.lists(st.sampled_from(MIXED_PIECES), max_size=40).map("".join)
RANDOM_TEXT = st.one_of(st.text(max_size=200), MIXED)


@given(text=RANDOM_TEXT)
@settings(max_examples=300, deadline=None)
def test_random_text_matches_tiktoken_and_round_trips(reference, python_tok, text):
    ids = python_tok.encode(text, disallowed_special=())
    assert ids == reference.encode(text, disallowed_special=())
    assert python_tok.encode_ordinary(text) == ids
    assert python_tok.decode(ids) == text
    assert "".join(python_tok.decode_stream(ids)) == text


@given(parts=st.lists(st.one_of(RANDOM_TEXT, st.just(EOT)), max_size=6))
@settings(max_examples=150, deadline=None)
def test_random_text_with_endoftext_matches_tiktoken(reference, python_tok, parts):
    text = "".join(parts)
    ids = python_tok.encode(text, allowed_special="all")
    assert ids == reference.encode(text, allowed_special="all")
    assert ids.count(50256) == text.count(EOT)
    assert python_tok.decode(ids) == text


@given(ids=st.lists(st.integers(0, 50256), max_size=30))
@settings(max_examples=300, deadline=None)
def test_decode_stream_joins_to_decode_for_any_ids(reference, python_tok, ids):
    # Any id sequence, including ones that cut UTF-8 characters: same text as one-shot decode.
    text = python_tok.decode(ids)
    assert text == reference.decode(ids, errors="replace")
    assert "".join(python_tok.decode_stream(ids)) == text


# Lone surrogates cannot be UTF-8; tiktoken (and so our "tiktoken" backend) turns the whole
# text into UTF-16 and back with errors="replace": one U+FFFD per lone surrogate, and a
# surrogate *pair* becomes the astral character it encodes. The python backend must agree.
SURROGATE_CASES = {
    "lone-high": "\ud800",
    "lone-in-word": "a\ud800b",
    "lone-after-space": "x \udc00 y",
    "pair": "\ud83e\udd17",
}


@pytest.mark.parametrize("text", SURROGATE_CASES.values(), ids=list(SURROGATE_CASES))
def test_surrogates_like_tiktoken(reference, python_tok, text):
    expected = reference.encode(text)
    assert _tokenizer("tiktoken").encode(text) == expected
    assert python_tok.encode(text) == expected


# --- files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_hugging_face_file_names(tmp_path, backend):
    source = BUNDLED_TOKENIZER
    shutil.copy(source / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(source / "vocab.bpe", tmp_path / "merges.txt")
    hf = Tokenizer.from_folder(tmp_path, backend=backend)
    assert hf.backend == backend
    ours = _tokenizer(backend)
    for text in [*KNOWN, "I'll see 🦄 in 2024.\n\nDone."]:
        assert hf.encode(text) == ours.encode(text)
    assert hf.encoder == ours.encoder
    assert hf.merge_ranks == ours.merge_ranks


def test_openai_file_names_load(python_tok):
    loaded = Tokenizer.from_folder(BUNDLED_TOKENIZER, backend="python")
    assert loaded.encoder == python_tok.encoder
    assert loaded.merge_ranks == python_tok.merge_ranks


def test_save_and_reload(tmp_path, python_tok):
    python_tok.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert sorted(p.name for p in saved.iterdir()) == ["merges.txt", "vocab.json"]
    assert (saved / "merges.txt").read_bytes() == (BUNDLED_TOKENIZER / "vocab.bpe").read_bytes()
    again = Tokenizer.from_folder(saved, backend="python")
    assert again.encoder == python_tok.encoder
    assert again.merge_ranks == python_tok.merge_ranks
    assert again.encode("Mike is quick. He moves") == KNOWN["Mike is quick. He moves"]


def test_folder_without_merges_names_the_expected_files(tmp_path):
    shutil.copy(BUNDLED_TOKENIZER / "encoder.json", tmp_path / "vocab.json")
    with pytest.raises(TokenizerError) as err:
        Tokenizer.from_folder(tmp_path)
    message = str(err.value)
    for name in ("encoder.json", "vocab.bpe", "vocab.json", "merges.txt"):
        assert name in message


def test_malformed_merges_line_is_named(tmp_path):
    source = BUNDLED_TOKENIZER
    shutil.copy(source / "encoder.json", tmp_path / "vocab.json")
    lines = (source / "vocab.bpe").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[4] = "Ġ t h\n"  # line 5 of the file: three tokens instead of two
    (tmp_path / "merges.txt").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"merges\.txt:5\b") as err:
        Tokenizer.from_folder(tmp_path)
    assert "'Ġ t h'" in str(err.value)


# --- errors -----------------------------------------------------------------------------------
def test_special_token_text_is_refused_by_default(tok, reference):
    text = f"a {EOT} b"
    with pytest.raises(TokenizerError, match="allowed_special"):
        tok.encode(text)
    ids = tok.encode(text, disallowed_special=())
    assert 50256 not in ids
    assert ids == reference.encode_ordinary(text)
    assert ids == tok.encode_ordinary(text)
    assert len(ids) > 3  # "<|endoftext|>" spelled out as ordinary pieces
    assert tok.decode(ids) == text


@pytest.mark.parametrize("bad", [[50257], [-1], [15496, 10**9]])
def test_decode_out_of_range_ids(tok, bad):
    with pytest.raises(TokenizerError):
        tok.decode(bad)


@pytest.mark.parametrize("bad", [123, None, b"bytes", ["a"]])
def test_encode_non_str(tok, bad):
    with pytest.raises(TokenizerError, match="str"):
        tok.encode(bad)


def test_unknown_disallowed_special_is_a_tokenizer_error(tok):
    # tiktoken raises ValueError here; ours must raise its own TokenizerError, not KeyError.
    with pytest.raises(TokenizerError):
        tok.encode("a<|foo|>", disallowed_special={"<|foo|>"})


# --- decode_stream ------------------------------------------------------------------------------
@pytest.mark.parametrize("emoji", ["🤗", "🦄"])
def test_decode_stream_yields_split_emoji_once_whole(tok, emoji):
    ids = tok.encode(emoji)
    assert len(ids) > 1  # the emoji's four bytes span several tokens...
    assert "\ufffd" in tok.decode(ids[:1])  # ...and the first one alone is not valid UTF-8
    assert list(tok.decode_stream(ids)) == [emoji]

    text = f"I love {emoji} and {emoji}!"
    pieces = list(tok.decode_stream(tok.encode(text)))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert sum(p.count(emoji) for p in pieces) == 2
