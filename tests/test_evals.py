"""Every evaluation metric against an independent computation: the same numbers computed directly
with `transformers` on the same random-weight model, from the metric's definition."""

from __future__ import annotations

import functools
import math
import re

import pytest
import torch
from conftest import EVAL_SAMPLES, shared_path

import gpt2lab
from gpt2lab.errors import UsageError
from gpt2lab.evals import (
    Request,
    detokenize,
    evaluate_bits,
    evaluate_cbt,
    evaluate_lambada,
    evaluate_perplexity,
    retokenize,
    score,
    score_text,
    sliding_windows,
)
from gpt2lab.evals.data import CBTQuestion, read_cbt, read_lines, split_chars
from gpt2lab.evals.lambada import STOP_WORDS, split_last_word
from gpt2lab.evals.perplexity import original_tokens

EOT = 50256
TEXT = (
    "The cat sat on the mat. It was a sunny day, and the children played in the park. "
    "Then it began to rain, so everyone ran home.\nThe next morning the sun came back.\n"
)


@pytest.fixture(scope="module")
def models(small_hf):
    """(transformers model, the same weights loaded by gpt2lab)."""
    hf, folder = small_hf
    return hf, gpt2lab.load(folder)


@torch.no_grad()
def hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    """log softmax of transformers' logits for one sequence: [T, V], float64."""
    return hf(torch.tensor([ids])).logits[0].double().log_softmax(-1)


def hf_window_nll(hf, ids: list[int], context: int, stride: int) -> float:
    """-log p(ids) with the sliding-window method, written out one window at a time: each token
    is predicted once, from the window that first reaches it (ids[0] is the start token)."""
    total, predicted, begin = 0.0, 1, 0
    while predicted < len(ids):
        end = min(begin + context, len(ids))
        logp = hf_logprobs(hf, ids[begin:end])
        total -= sum(float(logp[p - begin - 1, ids[p]]) for p in range(predicted, end))
        predicted, begin = end, begin + stride
    return total


# --- scoring ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("context", "stride"), [(32, 8), (128, 64), (100, 99)])
def test_sliding_window_nll_equals_transformers(models, context, stride):
    hf, model = models
    text = TEXT * 2
    ids = model.tokenizer.encode(text)
    result = score_text(model, text, context=context, stride=stride, batch_size=3)
    assert result.nll == pytest.approx(hf_window_nll(hf, [EOT, *ids], context, stride), rel=1e-5)
    assert result.tokens == len(ids)
    assert result.scored_bytes == text.encode()


def test_score_is_batch_invariant_and_matches_transformers(models):
    hf, model = models
    tok = model.tokenizer
    pairs = [("Hello there", " friend"), ("A", " much longer continuation of text"), ("x y z", ".")]
    requests = [Request(tok.encode(c), tok.encode(t)) for c, t in pairs]
    one = score(model, requests, batch_size=1)
    batched = score(model, requests, batch_size=3)  # padded on the right
    for (c, t), a, b in zip(pairs, one, batched):
        torch.testing.assert_close(a.logprobs, b.logprobs)
        assert torch.equal(a.greedy, b.greedy)
        ctx, cont = tok.encode(c), tok.encode(t)
        logp = hf_logprobs(hf, ctx + cont)
        rows = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
        expected = torch.tensor(
            [float(logp[r, i]) for r, i in zip(rows, cont)], dtype=torch.float64
        )
        torch.testing.assert_close(a.logprobs, expected, rtol=1e-5, atol=1e-5)
        assert a.greedy.tolist() == [int(logp[r].argmax()) == i for r, i in zip(rows, cont)]


def test_long_context_keeps_its_end(models):
    hf, model = models
    ids = model.tokenizer.encode(TEXT * 3)  # > 128 positions
    context, continuation = ids[:-5], ids[-5:]
    scored = score(model, [Request(context, continuation)])[0]
    kept = ids[-model.config.n_positions :]
    logp = hf_logprobs(hf, kept)
    expected = sum(float(logp[len(kept) - 6 + i, t]) for i, t in enumerate(continuation))
    assert -scored.nll == pytest.approx(expected, rel=1e-5)


def test_sliding_windows_score_each_token_once():
    windows = sliding_windows(list(range(100, 120)), context=8, stride=3, start_token=EOT)
    assert windows[0].context.tolist() == [EOT]
    scored = torch.cat([w.continuation for w in windows]).tolist()
    assert scored == list(range(100, 120))
    for w in windows:
        assert len(w.context) + len(w.continuation) <= 8
    with pytest.raises(UsageError, match="stride"):
        sliding_windows([1, 2, 3], context=8, stride=8, start_token=EOT)


# --- LAMBADA ----------------------------------------------------------------------------------
def test_split_last_word():
    assert split_last_word("He said hello") == ("He said", " hello")
    assert split_last_word('"Go," said "Nadia') == ('"Go," said', ' "Nadia')
    with pytest.raises(UsageError):
        split_last_word("alone")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """The bundled trained ``tiny`` in transformers (from the Hugging Face folder gpt2lab saves)
    and in gpt2lab: a random model predicts nearly the same token everywhere, a trained one
    writes real words."""
    from transformers import GPT2LMHeadModel

    model = gpt2lab.load("tiny")
    folder = model.save(tmp_path_factory.mktemp("tiny_hf"))
    return GPT2LMHeadModel.from_pretrained(folder).eval(), model


def _greedy_word(model, context: str) -> str | None:
    """The word the model writes after ``context`` when decoding greedily, if its greedy tokens
    spell " word" exactly (so the word is, by construction, predicted correctly)."""
    tok = model.tokenizer
    new = model.generate(context, 4, greedy=True, stop_at_eos=False)
    for n in range(1, 4):
        word, after = tok.decode(new[:n]), tok.decode([new[n]])
        if re.fullmatch(r" [A-Za-z]{2,}", word) and not after[0].isalpha():
            return word if tok.encode(word) == new[:n] else None
    return None


CONTEXTS = [
    "Once upon a time, there was a little girl named",
    "Tom and his sister went to the",
    "The bird flew up into the",
    *(
        f"There was a dog named {name}. {name} liked to run and play. One day, the girl "
        f'called her dog. She said, "Come here,'
        for name in ("Timmy", "Tommy")
    ),
]


@pytest.fixture(scope="module")
def lambada_items(tiny_models):
    """Passages whose last word is the model's own greedy continuation (known correct, some of
    several BPE tokens), and the same passages ending in a word it did not predict."""
    _, model = tiny_models
    tok = model.tokenizer
    right = [c + w for c in CONTEXTS if (w := _greedy_word(model, c)) is not None]
    wrong = [text.rsplit(" ", 1)[0] + " Shawshank" for text in right[-2:]]
    assert len(right) >= 3
    assert any(len(tok.encode(" " + text.rsplit(" ", 1)[1])) > 1 for text in right)
    return right, wrong


@functools.lru_cache(maxsize=32)
def _target_logprobs(hf, context: tuple[int, ...], target: tuple[int, ...]) -> torch.Tensor:
    """transformers' log-probabilities at the positions that predict ``target``: [n, V]."""
    return hf_logprobs(hf, [*context, *target])[len(context) - 1 : -1]


def brute_force(hf, tok, texts, last_token=False, allowed=None):
    """(correct, total NLL) with teacher forcing, from transformers' full logits."""
    correct, nll = 0, 0.0
    for text in texts:
        context, target = text.rsplit(" ", 1)
        tgt = tok.encode(" " + target)
        logp = _target_logprobs(hf, tuple(tok.encode(context)), tuple(tgt))
        preds = []
        for k, row in enumerate(logp):
            if allowed is not None and k == 0:
                row = row.masked_fill(~allowed, -math.inf)
            preds.append(int(row.argmax()))
        pick = slice(-1, None) if last_token else slice(None)
        correct += preds[pick] == tgt[pick]
        nll -= sum(float(row[t]) for row, t in list(zip(logp, tgt))[pick])
    return correct, nll


@pytest.mark.parametrize("last_token", [False, True])
def test_lambada_matches_brute_force(tiny_models, lambada_items, last_token):
    hf, model = tiny_models
    right, wrong = lambada_items
    result = evaluate_lambada(model, right + wrong, last_token=last_token, batch_size=3)
    correct, nll = brute_force(hf, model.tokenizer, right + wrong, last_token)
    assert result.correct == correct
    if not last_token:
        assert result.correct == len(right)  # the planted words are right, " Shawshank" is not
    # float32 log-probabilities of two libraries agree to about 1e-4 per scored token (their
    # kernels sum in different orders), so the sums are compared per item
    items = len(right + wrong)
    assert result.nll / items == pytest.approx(nll / items, abs=1e-4)
    assert math.log(result.ppl) == pytest.approx(nll / items, abs=1e-4)


def test_lambada_stop_filter(tiny_models, lambada_items):
    hf, model = tiny_models
    tok = model.tokenizer
    right, wrong = lambada_items
    allowed = torch.tensor(
        [
            (t := tok.decode([i]))[:1] == " "
            and len(t) > 1
            and not t[1].isspace()
            and t[1:].lower() not in STOP_WORDS
            for i in range(model.config.vocab_size)
        ]
    )
    texts = [*right[:3], *wrong[:2], "Lily went to the park with the", "She was very happy and"]
    result = evaluate_lambada(model, texts, stop_filter=True)
    assert result.correct == brute_force(hf, tok, texts, allowed=allowed)[0]
    assert not allowed[tok.encode(" the")[0]] and allowed[tok.encode(" river")[0]]


# --- perplexity -------------------------------------------------------------------------------
WIKI = [
    " = Robert <unk> = ",
    " ",
    " Robert <unk> is an English film , television and theatre actor . He had a guest @-@ "
    'starring role on the television series The Bill in 2000 . He said " it \'s fine " . ',
    " In 2006 , <unk> starred alongside <unk> in the play ( 2 @,@ 000 seats ) . ",
]


@pytest.mark.parametrize("detok", [True, False])
def test_word_level_perplexity_equals_transformers(models, detok):
    hf, model = models
    lines = WIKI * 2
    result = evaluate_perplexity(model, "wikitext2", lines, detok=detok, context=64, stride=16)
    shown = [detokenize("wikitext", line) for line in lines] if detok else lines
    ids = [EOT, *model.tokenizer.encode("\n".join(shown) + "\n")]
    nll = hf_window_nll(hf, ids, 64, 16)
    words = sum(len(line.split()) for line in lines) + len(lines)  # + one end-of-line per line
    assert result.units == words
    assert result.ppl == pytest.approx(math.exp(nll / words), rel=1e-5)
    assert result.bpe_ppl == pytest.approx(math.exp(nll / (len(ids) - 1)), rel=1e-5)
    assert result.bpe_tokens == len(ids) - 1


def test_limited_perplexity_counts_the_words_it_scored(models):
    _, model = models
    lines = WIKI * 6
    full = evaluate_perplexity(model, "wikitext2", lines, context=32, stride=16)
    part = evaluate_perplexity(model, "wikitext2", lines, context=32, stride=16, limit=3)
    assert part.windows == 3 and full.windows > 3
    assert part.bpe_tokens == 31 + 2 * 16
    ids = model.tokenizer.encode("\n".join(detokenize("wikitext", x) for x in lines) + "\n")
    scored = model.tokenizer.decode(ids[: part.bpe_tokens])
    *complete, partial = scored.split("\n")
    words = original_tokens(lines[: len(complete)]) + len(partial.split())
    assert words - 2 <= part.units <= words + 2  # "it's" in a cut line may count as 1 or 2


def test_original_token_counts_of_the_wikitext_sample():
    lines = read_lines(EVAL_SAMPLES / "wikitext2_test_first3.tokens")
    assert (len(lines), original_tokens(lines)) == (177, 8_272 + 177)  # wc -lw: lines, words


def test_original_token_counts_of_the_shared_files():
    for parts, expected in [
        (("wikitext-2", "wiki.test.tokens"), 245_569),
        (("ptb", "ptb.test.txt"), 82_430),
    ]:
        lines = shared_path("eval", *parts).read_text().removesuffix("\n").split("\n")
        assert original_tokens(lines) == expected


# --- bits per byte / character --------------------------------------------------------------
def test_bits_per_byte_equals_nll_over_ln2_bytes(models, tmp_path):
    hf, model = models
    raw = (
        "<page><title>Café</title><text>naïve [[résumé]] &amp; 東京</text></page>\n" * 5
    ).encode()
    text = split_chars(raw, "test", test_size=len(raw) - 3)  # starts inside "<pa", fine
    assert text.encode() == raw[3:]
    result = evaluate_bits(model, "enwik8", text, context=64, stride=32)
    nll = hf_window_nll(hf, [EOT, *model.tokenizer.encode(text)], 64, 32)
    assert result.unit == "byte" and result.units == len(raw) - 3
    assert result.bits_per_unit == pytest.approx(nll / math.log(2) / (len(raw) - 3), rel=1e-5)


def test_split_chars_drops_a_cut_character_and_splits_valid_before_test():
    data = b"xyab" + "é".encode() + b"123456789"  # the split cuts "é" (2 bytes) in half
    assert split_chars(data, "test", test_size=10) == "123456789"
    assert split_chars(data, "valid", test_size=10) == "xyab"
    assert split_chars(data, "valid", test_size=5) == "1234"  # bytes 5-9: half an "é", "1234"


def test_text8_counts_characters(models):
    _, model = models
    text = "anarchism originated as a term of abuse first used against early working class " * 3
    result = evaluate_bits(model, "text8", text, context=32, stride=16, limit=2)
    tokens = model.tokenizer.encode(text)[: result.bpe_tokens]
    assert result.unit == "character"
    assert result.units == len(model.tokenizer.decode(tokens))


# --- CBT --------------------------------------------------------------------------------------
CANDIDATES = ["dog", "cat", "teapot", "king", "river", "house", "girl", "tree", "boat", "moon"]
STORY = [f"{n} The {w} ran ." for n, w in zip(range(1, 21), CANDIDATES * 2)]


def _cbt_file(path, answers: list[str]) -> None:
    blocks = []
    for answer in answers:
        query = "21 `` I 'm sure the XXXXX will come back , '' she said ."
        blocks.append("\n".join([*STORY, f"{query}\t{answer}\t\t{'|'.join(CANDIDATES)}"]))
    path.write_text("\n\n".join(blocks) + "\n")


def test_cbt_picks_the_most_probable_completed_sentence(models, tmp_path):
    hf, model = models
    tok = model.tokenizer
    story = " ".join(detokenize("cbt", s.split(" ", 1)[1]) for s in STORY)
    sentence = detokenize("cbt", "`` I 'm sure the XXXXX will come back , '' she said .")

    def logp_of_text(word: str) -> float:  # the paper's: probability of the completed sentence
        ids = tok.encode(story + " " + sentence.replace("XXXXX", word))
        assert len(ids) <= model.config.n_positions
        logp = hf_logprobs(hf, ids)
        return sum(float(logp[p - 1, ids[p]]) for p in range(1, len(ids)))

    scores = {c: logp_of_text(c) for c in CANDIDATES}
    best = max(scores, key=scores.get)
    other = next(c for c in CANDIDATES if c != best)
    path = tmp_path / "cbtest_CN_valid_2000ex.txt"
    _cbt_file(path, [best, other])
    questions = read_cbt(path)
    assert len(questions) == 2 and questions[1].answer == other
    assert questions[0].sentences[0] == "The dog ran ."
    result = evaluate_cbt(model, "cbt-cn", questions, batch_size=7)
    assert (result.correct, result.n) == (1, 2)


def test_cbt_gap_at_the_start_gets_no_space(models):
    from gpt2lab.evals.cbt import completions

    _, model = models
    q = CBTQuestion(("One .",), "XXXXX ran .", "dog", ("dog", "cat"))
    requests = completions(q, model.tokenizer)
    assert model.tokenizer.decode(requests[0].context) == "One."
    assert model.tokenizer.decode(requests[0].continuation) == " dog ran."


# --- de-tokenizers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "original", "detokenized"),
    [
        (
            "wikitext",
            " a guest @-@ starring role , 1 @,@ 000 and 2 @.@ 5 . ",
            "a guest-starring role, 1,000 and 2.5.",
        ),
        ("wikitext", " = = Career = = ", "== Career =="),
        (
            "wikitext",
            " Teddy 's \" Story \" ( 2004 ) ; don 't ! ",
            "Teddy's \"Story\" (2004); don't!",
        ),
        ("wikitext", " ", ""),
        ("ptb", " no it was n't black monday ", "no it wasn't black monday"),
        ("ptb", " the company 's $ N million ", "the company's $ N million"),
        ("1bw", 'He said : " We \'re ready , " and left .', 'He said: "We\'re ready," and left.'),
    ],
)
def test_detokenize_known_strings(name, original, detokenized):
    assert detokenize(name, original) == detokenized
    assert retokenize(name, detokenized) == original


def test_cbt_detokenizer_turns_latex_quotes_into_plain_ones():
    assert detokenize("cbt", "`` I do n't know , '' he said .") == '"I don\'t know," he said.'


def test_detokenizer_inverts_the_wikitext_sample():
    wiki = read_lines(EVAL_SAMPLES / "wikitext2_test_first3.tokens")[:100]
    assert all(retokenize("wikitext", detokenize("wikitext", line)) == line for line in wiki)
    # The exceptions are abbreviations the original already wrote attached ("No. 6", "H.").
    assert retokenize("wikitext", detokenize("wikitext", " No. 6 turret ")) != " No. 6 turret "


def test_detokenizer_inverts_the_shared_ptb_file():
    ptb = shared_path("eval", "ptb", "ptb.test.txt").read_text().removesuffix("\n").split("\n")
    assert all(retokenize("ptb", detokenize("ptb", line)) == line for line in ptb)


def test_unknown_or_one_way_detokenizer():
    with pytest.raises(UsageError, match="no de-tokenizer"):
        detokenize("klingon", "x")
    with pytest.raises(UsageError, match="not invertible"):
        retokenize("cbt", '"Hi," he said.')  # `` and '' both became "
