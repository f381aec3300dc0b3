"""Reading Hugging Face tokenizer.json files of byte-level BPE, with the ``tokenizers`` library as
the oracle: the same ids on the shipped text excerpts and on random text.

No tokenizer.json can be downloaded in a test, so the library itself writes them here: GPT-2's
real vocabulary and merges in its pipeline, and vocabularies trained on the shipped stories with
the pre-tokenizers, normalizers and special tokens of Llama 3, Qwen2 and SmolLM (their regexes
copied from their published tokenizer.json files).
"""

from __future__ import annotations

import json
import re

import pytest
import tokenizers
from conftest import BUNDLED_TOKENIZER, DATA, EVAL_SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Regex, decoders, models, normalizers, processors, trainers
from tokenizers import pre_tokenizers as pre

from gpt2lab.errors import TokenizerError
from gpt2lab.tokenizer import PreTokenizer, Tokenizer, get_tokenizer

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
STORIES = (DATA / "tinystories" / "first_100k.txt").read_text(encoding="utf-8")
EXCERPTS = {
    "tinystories": STORIES[:30_000],
    "tinystories-held-out": (DATA / "tinystories" / "held_out.txt").read_text()[:20_000],
    "wikitext-2": (EVAL_SAMPLES / "wikitext2_test_first3.tokens").read_text()[:20_000],
    "lambada": (EVAL_SAMPLES / "lambada_test_first300.jsonl").read_text()[:20_000],
}
WORD_ONLY_IN_VOCAB = "Ġonceuponatime"  # a vocabulary entry no merge builds (ignore_merges)


def trained(pre_tokenizer, specials, *, normalizer=None, vocab_size=1200):
    """A byte-level BPE trained by ``tokenizers`` on the shipped stories."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre.ByteLevel.alphabet(),
        special_tokens=specials,
        show_progress=False,
    )
    tok.train_from_iterator([STORIES[i : i + 2000] for i in range(0, 60_000, 2000)], trainer)
    return tok


def with_model_changes(tok, **changes):
    """The same tokenizer with model fields changed in its JSON (ignore_merges, extra vocab)."""
    spec = json.loads(tok.to_str())
    extra_vocab = changes.pop("extra_vocab", ())
    for word in extra_vocab:
        spec["model"]["vocab"][word] = len(spec["model"]["vocab"]) + len(spec["added_tokens"])
    spec["model"].update(changes)
    return tokenizers.Tokenizer.from_str(json.dumps(spec))


def build_gpt2():
    vocab = BUNDLED_TOKENIZER / "encoder.json"
    tok = tokenizers.Tokenizer(
        models.BPE.from_file(str(vocab), str(BUNDLED_TOKENIZER / "vocab.bpe"))
    )
    tok.pre_tokenizer = pre.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def build_llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    specials += [f"<|reserved_special_token_{i}|>" for i in range(12)]
    split = pre.Split(Regex(LLAMA3_REGEX), behavior="isolated")
    tok = trained(pre.Sequence([split, pre.ByteLevel(add_prefix_space=False, use_regex=False)]), [])
    tok = with_model_changes(tok, ignore_merges=True, extra_vocab=[WORD_ONLY_IN_VOCAB])
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    return tok


def build_qwen2():
    split = pre.Split(Regex(QWEN2_REGEX), behavior="isolated")
    tok = trained(
        pre.Sequence([split, pre.ByteLevel(add_prefix_space=False, use_regex=False)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        normalizer=normalizers.NFC(),
    )
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    return tok


def build_smollm():
    digits = pre.Digits(individual_digits=True)
    return trained(
        pre.Sequence([digits, pre.ByteLevel(add_prefix_space=False, use_regex=True)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    )


def build_prefix_space():
    return trained(pre.ByteLevel(add_prefix_space=True), ["<s>"], vocab_size=600)


BUILDERS = {
    "gpt2": build_gpt2,
    "llama3": build_llama3,
    "qwen2": build_qwen2,
    "smollm": build_smollm,
    "prefix-space": build_prefix_space,
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """name -> (the library's tokenizer, ours read from the tokenizer.json it wrote)."""
    folder = tmp_path_factory.mktemp("tokenizer_json")
    built = {}
    for name, build in BUILDERS.items():
        lib = build()
        path = folder / f"{name}.json"
        lib.save(str(path))
        built[name] = (lib, Tokenizer.from_tokenizer_json(path))
    return built


def library_ids(lib, text: str, *, specials: bool) -> list[int]:
    lib.encode_special_tokens = not specials
    return lib.encode(text, add_special_tokens=False).ids


def assert_same(lib, ours: Tokenizer, text: str) -> None:
    ids = ours.encode(text, allowed_special="all")
    assert ids == library_ids(lib, text, specials=True)
    assert ours.encode_ordinary(text) == library_ids(lib, text, specials=False)
    assert ours.decode(ids) == lib.decode(ids, skip_special_tokens=False)


# --- the same ids as the library ------------------------------------------------------------
@pytest.mark.parametrize("excerpt", list(EXCERPTS))
@pytest.mark.parametrize("name", list(BUILDERS))
def test_same_ids_as_tokenizers_on_excerpts(pairs, name, excerpt):
    lib, ours = pairs[name]
    assert_same(lib, ours, EXCERPTS[excerpt])


MIXED_PIECES = [
    " ", "  ", "\n", "\n\n", "\r\n", "\t", "\u00a0", "\u3000", "0", "42", "1234567", "٣", "½",
    "'s", "'S", "'LL", "'t", "’", "a", "Z", "é", "e\u0301", "\u0301", "ß", "ﬁ", "İ", "Å",
    "🤗", "👍🏽", "東京", "한국어", "العربية", ".", "!", '"', "<|", "|>", "\x00",
    "<|endoftext|>", "<|im_start|>", "<|begin_of_text|>", "<tool_call>", "<s>", "Once upon",
    " once", "onceuponatime", " onceuponatime",
]  # fmt: skip
RANDOM_TEXT = st.one_of(
    st.text(max_size=120), st.lists(st.sampled_from(MIXED_PIECES), max_size=30).map("".join)
)


@given(text=RANDOM_TEXT, name=st.sampled_from(list(BUILDERS)))
@settings(max_examples=250, deadline=None)
def test_same_ids_as_tokenizers_on_random_text(pairs, text, name):
    lib, ours = pairs[name]
    assert_same(lib, ours, text)


def test_what_each_file_is_read_as(pairs):
    gpt2, llama3, qwen2, smollm = (pairs[n][1] for n in ("gpt2", "llama3", "qwen2", "smollm"))
    assert gpt2.is_gpt2_style and gpt2.pretokenizer == PreTokenizer()
    assert llama3.pretokenizer == PreTokenizer(splits=(LLAMA3_REGEX,), byte_level_regex=False)
    assert llama3.ignore_merges and not qwen2.ignore_merges
    assert qwen2.pretokenizer.normalization == "NFC"
    assert smollm.pretokenizer.splits == (r"\p{N}",) and smollm.pretokenizer.byte_level_regex
    assert set(qwen2.special_tokens) == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    assert set(qwen2.added_tokens) == {"<tool_call>"}
    assert len(llama3.special_tokens) == 15
    # GPT-2's tokenizer.json gives GPT-2's ids, through the fast backend when it is installed
    text = "Mike is quick. He moves<|endoftext|>"
    assert gpt2.encode(text, allowed_special="all") == [16073, 318, 2068, 13, 679, 6100, 50256]
    assert gpt2.backend == get_tokenizer().backend


def test_llama3_ignore_merges_and_begin_of_text(pairs):
    lib, ours = pairs["llama3"]
    ids = ours.encode(" onceuponatime")
    assert [ours.id_to_token(i) for i in ids] == [WORD_ONLY_IN_VOCAB]  # whole, not merged
    assert [t.pieces for t in ours.trace(" onceuponatime")] == [(WORD_ONLY_IN_VOCAB,)]
    without = Tokenizer(ours.encoder, sorted(ours.merge_ranks, key=ours.merge_ranks.get))
    assert len(without.encode(" onceuponatime", disallowed_special=())) > 1
    # the post-processor's <|begin_of_text|>: read, not added by encode
    assert ours.prefix_ids == (ours.special_tokens["<|begin_of_text|>"],)
    lib.encode_special_tokens = False
    assert lib.encode("Hi").ids == [*ours.prefix_ids, *ours.encode("Hi")]


def test_merges_as_strings_or_lists(pairs, tmp_path):
    """tokenizers >= 0.20 writes ["a", "b"]; older files (GPT-2's on the Hub) write "a b"."""
    lib, ours = pairs["qwen2"]
    spec = json.loads(lib.to_str())
    pairs_of = [m.split(" ") if isinstance(m, str) else m for m in spec["model"]["merges"]]
    for form in ([" ".join(p) for p in pairs_of], pairs_of):
        spec["model"]["merges"] = form
        (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
        read = Tokenizer.from_tokenizer_json(tmp_path / "tokenizer.json")
        assert read.merge_ranks == ours.merge_ranks
        assert read.encode(EXCERPTS["lambada"]) == ours.encode(EXCERPTS["lambada"])


def test_special_tokens_are_refused_unless_allowed(pairs):
    _, ours = pairs["qwen2"]
    with pytest.raises(TokenizerError, match=re.escape("disallowed special token '<|im_start|>'")):
        ours.encode("<|im_start|>user")
    assert ours.encode("<tool_call>") == [ours.added_tokens["<tool_call>"]]  # not special


# --- folders and saving ----------------------------------------------------------------------
def test_folder_prefers_what_says_more(pairs, tmp_path):
    lib, _ = pairs["gpt2"]
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    lib.save(str(gpt2 / "tokenizer.json"))
    get_tokenizer().save(gpt2)  # vocab.json + merges.txt, as in GPT-2's Hub folders
    assert Tokenizer.from_folder(gpt2).tokenizer_json is None  # the pair, as always
    (gpt2 / "vocab.json").unlink()
    only_json = Tokenizer.from_folder(gpt2)
    assert only_json.tokenizer_json is not None
    assert only_json.encode(EXCERPTS["wikitext-2"]) == get_tokenizer().encode(
        EXCERPTS["wikitext-2"]
    )

    qwen_lib, qwen = pairs["qwen2"]
    folder = tmp_path / "qwen2"
    qwen.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json"]
    Tokenizer(qwen.encoder, sorted(qwen.merge_ranks, key=qwen.merge_ranks.get)).save(folder)
    reloaded = Tokenizer.from_folder(folder)  # Qwen2 folders hold all three files
    assert reloaded.pretokenizer == qwen.pretokenizer
    text = EXCERPTS["tinystories"][:5000] + "<|im_end|>"
    assert reloaded.encode(text, allowed_special="all") == library_ids(
        qwen_lib, text, specials=True
    )


def test_empty_folder_names_every_kind(tmp_path):
    with pytest.raises(TokenizerError, match=r"expected tokenizer\.json, encoder\.json"):
        Tokenizer.from_folder(tmp_path)


# --- what is not byte-level BPE ----------------------------------------------------------------
def sentencepiece_style():
    tok = tokenizers.Tokenizer(models.BPE(byte_fallback=True))
    tok.pre_tokenizer = pre.Metaspace()
    return tok


def wordpiece():
    tok = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre.BertPreTokenizer()
    return tok


def whitespace_bpe():
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre.Whitespace()
    return tok


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (sentencepiece_style, "SentencePiece-style BPE \\(byte_fallback\\)"),
        (lambda: tokenizers.Tokenizer(models.Unigram([("a", 0.0)])), "the model is Unigram"),
        (wordpiece, "the model is WordPiece"),
        (whitespace_bpe, "pre-tokenizer Whitespace is not byte-level"),
    ],
)
def test_other_kinds_are_refused_naming_what_is_read(tmp_path, build, message):
    build().save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=message) as excinfo:
        Tokenizer.from_tokenizer_json(tmp_path / "tokenizer.json")
    assert "gpt2lab reads byte-level BPE tokenizer.json files" in str(excinfo.value)


def test_metaspace_and_lowercase_are_named(pairs, tmp_path):
    spec = json.loads(pairs["smollm"][0].to_str())
    for part, value, message in [
        ("pre_tokenizer", {"type": "Metaspace"}, "SentencePiece-style \\(Metaspace\\)"),
        ("normalizer", {"type": "Lowercase"}, "normalizer Lowercase is not supported"),
    ]:
        (tmp_path / "t.json").write_text(json.dumps({**spec, part: value}))
        with pytest.raises(TokenizerError, match=message):
            Tokenizer.from_tokenizer_json(tmp_path / "t.json")


@pytest.mark.parametrize(
    "damage",
    [
        lambda spec: spec["model"].update(merges=[["a"]]),
        lambda spec: spec["model"].update(merges=5),
        lambda spec: spec["model"]["vocab"].update(x="1"),
        lambda spec: spec.update(added_tokens=[{"id": 5}]),
        lambda spec: spec.update(pre_tokenizer=["ByteLevel"]),
        lambda spec: spec["pre_tokenizer"]["pretokenizers"][0].update(
            type="Split", pattern={"Regex": "("}, behavior="Isolated"
        ),
        lambda spec: spec.update(normalizer="NFC"),
        lambda spec: spec.pop("model"),
    ],
)
def test_damaged_files_are_one_clear_error(pairs, tmp_path, damage):
    spec = json.loads(pairs["smollm"][0].to_str())
    damage(spec)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(TokenizerError) as excinfo:
        Tokenizer.from_tokenizer_json(tmp_path / "tokenizer.json")
    assert "\n" not in str(excinfo.value)
