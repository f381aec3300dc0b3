"""Random input (hypothesis): the tokenizer, the argument parser and `gpt2lab` commands.

The tokenizer gpt2lab uses by default (``get_tokenizer()``) must give tiktoken's GPT-2 ids for
any text and turn them back into the same text; any ids in range decode, ids out of range are a
TokenizerError. The parser either parses an argument list or exits with status 2; commands run
on random arguments end with 0, 1 or 2 and never raise. (tests/test_tokenizer.py fuzzes the
pure-Python backend; this file the default one and the command line.)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
from conftest import TINY_CONFIG
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gpt2lab
from gpt2lab.cli import build_parser, main
from gpt2lab.errors import TokenizerError

BUNDLED = Path(gpt2lab.__file__).parent / "data" / "tokenizer"
# sha256 of OpenAI's published GPT-2 files, as tiktoken's own gpt2 definition checks them
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
EOT = "<|endoftext|>"
FUZZ = settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def reference():
    """tiktoken's "gpt2" encoding (its pattern, its loader), from gpt2lab's bundled copies of
    OpenAI's files: tiktoken cannot download them here, and checks they are byte-identical."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(BUNDLED / "vocab.bpe"),
        encoder_json_file=str(BUNDLED / "encoder.json"),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
        explicit_n_vocab=50257,
    )


@pytest.fixture(scope="module")
def tok():
    return gpt2lab.get_tokenizer()


# --- the tokenizer ----------------------------------------------------------------------------
PIECES = [
    " ", "  ", "\n", "\r\n", "\t", "\u00a0", "\u3000", "\u200b", "'s", "'LL", "’", "0", "42",
    "٣", "é", "e\u0301", "ß", "İ", "🤗", "👨‍👩‍👧", "🇫🇷", "日本語", "한국어", "العربية",
    ".", "!", "<|", "|>", "\x00", "\ufffd", EOT,
]  # fmt: skip
TEXT = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
)


@given(text=TEXT)
@settings(FUZZ, max_examples=200)
def test_any_text_round_trips_with_tiktokens_ids(reference, tok, text):
    ids = tok.encode(text, allowed_special="all")
    assert ids == reference.encode(text, allowed_special="all")
    assert ids.count(50256) == text.count(EOT)
    assert tok.decode(ids) == text
    assert "".join(tok.decode_stream(ids)) == text
    assert tok.encode_ordinary(text) == reference.encode_ordinary(text)


@given(ids=st.lists(st.integers(0, 50256), max_size=40))
@settings(FUZZ, max_examples=200)
def test_any_ids_in_range_decode(reference, tok, ids):
    text = tok.decode(ids)  # may cut UTF-8 characters: those bytes become U+FFFD, no error
    assert text == reference.decode(ids, errors="replace")
    assert tok.decode_bytes(ids) == reference.decode_bytes(ids)
    assert "".join(tok.decode_stream(ids)) == text


OUT_OF_RANGE = st.one_of(st.integers(max_value=-1), st.integers(min_value=50257))


@given(
    before=st.lists(st.integers(0, 50256), max_size=5),
    bad=OUT_OF_RANGE,
    after=st.lists(st.integers(0, 50256), max_size=5),
)
@settings(FUZZ, max_examples=100)
def test_ids_out_of_range_are_a_tokenizer_error(tok, before, bad, after):
    ids = [*before, bad, *after]
    for decode in (tok.decode, tok.decode_bytes, lambda i: list(tok.decode_stream(i))):
        with pytest.raises(TokenizerError, match=r"\[0, 50257\)"):
            decode(ids)
    with pytest.raises(TokenizerError, match=re.escape(f"got [{bad}]")):
        tok.id_to_token(bad)


# --- the argument parser ----------------------------------------------------------------------
def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


SUBCOMMANDS = _subcommands()
OPTIONS = sorted(
    {
        opt
        for p in SUBCOMMANDS.values()
        for a in p._actions
        for opt in a.option_strings
        if opt not in ("-h", "--help")  # (help exits 0 on purpose)
    }
)
WORD = st.one_of(
    st.sampled_from([*SUBCOMMANDS, *OPTIONS, "tiny", "gpt2", "-", "--", "", "nan", "inf"]),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)
ARGV = st.one_of(
    st.lists(WORD, max_size=8),
    st.tuples(st.sampled_from(sorted(SUBCOMMANDS)), st.lists(WORD, max_size=8)).map(
        lambda t: [t[0], *t[1]]
    ),
)


def test_option_pool_is_the_real_one():
    assert {"generate", "train", "prepare", "eval", "serve", "tokenize", "steps"} <= set(
        SUBCOMMANDS
    )
    assert {"--top-p", "--max-new-tokens", "--layer", "--out-dir", "--resume"} <= set(OPTIONS)


@given(argv=ARGV)
@settings(FUZZ, max_examples=400)
def test_the_parser_parses_or_exits_2(capsys, argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: gpt2lab") and ": error: " in err
    else:
        assert args.command in SUBCOMMANDS and callable(args.func)


# --- commands on random arguments -------------------------------------------------------------
def run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert code in (0, 1, 2), (argv, code, err)
    if code:
        assert "gpt2lab: error: " in err or err.startswith("usage: gpt2lab"), err
    return code, out


@given(
    text=TEXT,
    flags=st.lists(st.sampled_from(["--json", "--trace"]), unique=True),
)
@settings(FUZZ)
def test_tokenize_any_text(capsys, text, flags):
    assume(not text.startswith("-"))  # (argparse would read it as an option)
    code, out = run(capsys, ["tokenize", text, *flags])
    assert code == 0
    if flags == ["--json"]:
        ids = json.loads(out)["ids"]
        assert gpt2lab.get_tokenizer().decode(ids) == text


@given(
    layer=st.one_of(st.none(), st.integers(-3, 12)),
    model=st.sampled_from([None, "tiny"]),
    as_json=st.booleans(),
)
@settings(FUZZ, max_examples=30)
def test_steps_any_layer(capsys, cached_tiny, layer, model, as_json):
    argv = ["steps"]
    argv += [] if layer is None else ["--layer", str(layer)]
    argv += [] if model is None else ["--model", model]
    argv += ["--json"] if as_json else []
    code, out = run(capsys, argv)
    in_range = layer is None or (layer >= 0 and (model is None or layer < TINY_CONFIG.n_layer))
    assert code == (0 if in_range else 2)
    if code == 0 and as_json:
        names = [step["name"] for step in json.loads(out)]
        assert names and (layer is None or f"blocks.{layer}.hook_resid_pre" in names)


FLOAT = st.one_of(
    # (not within 1e-6 of 0: see test_bad_input.py's test_extreme_sampling_values_still_generate)
    st.floats(-2, 3).filter(lambda x: abs(x) >= 1e-6),
    st.sampled_from([0.0, 1.0, float("nan"), float("inf")]),
)
PROMPTS = st.one_of(TEXT, st.integers(200, 300).map(lambda n: " the" * n))


@given(
    prompt=PROMPTS,
    n=st.integers(0, 3),
    temperature=st.one_of(st.none(), FLOAT),
    top_k=st.one_of(st.none(), st.integers(-2, 60000)),
    top_p=st.one_of(st.none(), FLOAT),
    seed=st.one_of(st.none(), st.integers(0, 2**32)),
    greedy=st.booleans(),
    truncate=st.booleans(),
)
@settings(FUZZ)
def test_generate_any_settings(
    capsys, cached_tiny, prompt, n, temperature, top_k, top_p, seed, greedy, truncate
):
    assume(not prompt.startswith("-"))
    argv = ["generate", prompt, "--model", "tiny", "--max-new-tokens", str(n)]
    for flag, value in (("--temperature", temperature), ("--top-k", top_k), ("--top-p", top_p)):
        argv += [] if value is None else [flag, str(value)]
    argv += [] if seed is None else ["--seed", str(seed)]
    argv += ["--greedy"] if greedy else []
    argv += ["--truncate", "left"] if truncate else []
    code, out = run(capsys, argv)
    n_prompt = len(gpt2lab.get_tokenizer().encode(prompt, allowed_special="all"))
    valid = (
        (temperature is None or temperature >= 0)  # (NaN is not)
        and (top_k is None or 1 <= top_k <= 50257)
        and (top_p is None or 0 < top_p <= 1)
        and n_prompt > 0
        and (truncate or n_prompt + n <= 256)
    )
    assert code == (0 if valid else 2)
    if valid:
        assert out.startswith(prompt) and out.endswith("\n")
