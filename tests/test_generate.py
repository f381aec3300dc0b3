"""Sampling steps, the cached generation loop, batches with padding, streaming, stopping."""

from __future__ import annotations

import pytest
import torch

import gpt2lab
from gpt2lab.errors import ContextLengthError, UsageError
from gpt2lab.generate import SamplingSettings, stop_tokens, top_k_filter, top_p_filter

PROMPT = "Mike is quick. He moves"


@pytest.fixture(scope="module")
def pair(small_hf):
    hf, folder = small_hf
    return hf, gpt2lab.load(folder)


# --- sampling steps ---------------------------------------------------------------------------
def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True, False]]
    assert kept[0, 1] == 5.0


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    # 0.5 alone < 0.75; 0.5 + 0.3 = 0.8 >= 0.75 -> keep tokens 0 and 2.
    assert torch.isfinite(top_p_filter(logits, 0.75)).tolist() == [[True, False, True, False]]
    # p = 0.5 is reached by the top token alone.
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()


def test_distribution_renormalises_after_filters():
    settings = SamplingSettings(temperature=0.5, top_k=3, top_p=0.9)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    probs = settings.distribution(logits)
    assert probs.sum().item() == pytest.approx(1.0)
    assert (probs[0, 3:] == 0).all()
    t = torch.softmax(logits[0, :3] / 0.5, dim=-1)
    kept = t[t.cumsum(0) - t < 0.9]
    assert probs[0, : len(kept)].tolist() == pytest.approx((kept / kept.sum()).tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 50258}, "top_k"),
        ({"max_new_tokens": -3}, "max_new_tokens"),
        ({"truncate": "right"}, "truncate"),
    ],
)
def test_bad_sampling_values_are_usage_errors(pair, kwargs, message):
    _, model = pair
    n = kwargs.pop("max_new_tokens", 5)
    with pytest.raises(UsageError, match=message):
        model.generate(PROMPT, n, **kwargs)


def test_empty_prompt_is_a_clear_error(pair):
    with pytest.raises(UsageError, match="empty"):
        pair[1].generate("", 5)


# --- the loop ---------------------------------------------------------------------------------
def test_greedy_matches_transformers(pair):
    hf, model = pair
    ids = model.tokenizer.encode(PROMPT)
    ours = model.generate(PROMPT, 20, greedy=True, stop_at_eos=False)
    ref = hf.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, pad_token_id=50256)
    assert ours == ref[0, len(ids) :].tolist()
    assert model.generate(ids, 20, temperature=0, stop_at_eos=False) == ours
    assert model.generate(PROMPT, 20, top_k=1, seed=5, stop_at_eos=False) == ours


def test_seeded_sampling_is_reproducible(pair):
    _, model = pair
    a = model.generate(PROMPT, 30, seed=123, top_p=0.95, temperature=1.3, stop_at_eos=False)
    b = model.generate(PROMPT, 30, seed=123, top_p=0.95, temperature=1.3, stop_at_eos=False)
    c = model.generate(PROMPT, 30, seed=124, top_p=0.95, temperature=1.3, stop_at_eos=False)
    assert a == b
    assert a != c
    assert len(a) == 30


def test_sampling_follows_the_distribution(pair):
    """Each first token drawn with seeds 0..N is one the filtered distribution allows."""
    _, model = pair
    ids = model.tokenizer.encode(PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[:, -1]
    allowed = SamplingSettings(top_k=5).distribution(logits)[0] > 0
    firsts = {model.generate(ids, 1, top_k=5, seed=s)[0] for s in range(40)}
    assert all(allowed[t] for t in firsts)
    assert len(firsts) > 1


def test_padded_batch_equals_one_by_one(pair):
    _, model = pair
    prompts = ["Hello", PROMPT, "Once upon a time there was a little girl named Lily. She"]
    batch = model.generate(prompts, 12, greedy=True, stop_at_eos=False)
    alone = [model.generate(p, 12, greedy=True, stop_at_eos=False) for p in prompts]
    assert batch == alone
    ids = [model.tokenizer.encode(p) for p in prompts]
    assert model.generate(ids, 12, greedy=True, stop_at_eos=False) == alone


def test_padding_does_not_leak_into_logits(pair):
    """Left-padded rows get the same last-position logits as unpadded ones."""
    _, model = pair
    short, long = [464, 2068, 7586], [40, 716, 257, 845, 890, 6152]
    ids = torch.tensor([[0, 0, 0, *short], long])
    mask = torch.tensor([[False] * 3 + [True] * 3, [True] * 6])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        padded = model(ids, attention_mask=mask, positions=positions)
        alone = model(torch.tensor([short]))
    assert (padded[0, 3:] - alone[0]).abs().max().item() <= 1e-5


def test_streaming_yields_the_same_tokens(pair):
    _, model = pair
    expected = model.generate(PROMPT, 15, seed=7)
    streamed = model.generate(PROMPT, 15, seed=7, stream=True)
    assert not isinstance(streamed, list)
    assert list(streamed) == expected
    text = "".join(model.generate_text(PROMPT, 15, seed=7, stream=True))
    assert text == model.generate_text(PROMPT, 15, seed=7) == model.tokenizer.decode(expected)


@pytest.fixture
def eos_model(small_hf):
    """The small model rewired so that <|endoftext|> is always by far the most likely token."""
    model = gpt2lab.load(small_hf[1])
    with torch.no_grad():
        ln_f = model.transformer.ln_f
        ln_f.weight.zero_()
        ln_f.bias.zero_()
        ln_f.bias[0] = 1.0
        model.transformer.wte.weight[:, 0] = 0.0
        model.transformer.wte.weight[50256, 0] = 100.0
    return model


def test_stops_at_endoftext(eos_model):
    assert eos_model.generate(PROMPT, 10) == []
    assert eos_model.generate(PROMPT, 10, stop_at_eos=False) == [50256] * 10
    assert eos_model.generate_text(PROMPT, 10) == ""


def test_stop_in_a_batch_only_ends_that_row(eos_model, pair):
    _, model = pair
    assert eos_model.generate([PROMPT, "Hi"], 4) == [[], []]
    assert len(model.generate([PROMPT, "Hi"], 4, stop_at_eos=False)[1]) == 4


def test_stops_at_the_configs_end_tokens(pair):
    """Llama 3's files name their end tokens in eos_token_id (one or several): generation stops
    at any of them; an id past the vocabulary (GPT-2's 50256 kept by a small model) is ignored."""
    _, model = pair
    free = model.generate([PROMPT, "Hi"], 6, greedy=True, stop_at_eos=False)
    ends = (free[0][2], free[1][4])
    kept = [row[: next(i for i, t in enumerate(row) if t in ends)] for row in free]
    config = model.config
    model.config = config.replace(eos_token_id=(ends[0], 10**6, ends[1]))
    try:
        assert stop_tokens(model)[-2:] == list(ends)
        assert model.generate([PROMPT, "Hi"], 6, greedy=True) == kept
        assert list(model.generate(PROMPT, 6, greedy=True, stream=True)) == kept[0]
    finally:
        model.config = config


def test_context_overflow_is_refused_or_truncated(pair):
    _, model = pair  # context 128
    ids = list(range(1000, 1120))  # 120 tokens
    with pytest.raises(ContextLengthError, match="truncate"):
        model.generate(ids, 10, greedy=True)
    kept = model.generate(ids, 10, greedy=True, truncate="left", stop_at_eos=False)
    assert kept == model.generate(ids[-118:], 10, greedy=True, stop_at_eos=False)
    with pytest.raises(ContextLengthError, match="no room"):
        model.generate(ids, 128, truncate="left")


def test_generation_restores_training_mode(pair):
    _, model = pair
    model.train()
    try:
        model.generate(PROMPT, 3, greedy=True)
        assert model.training
    finally:
        model.eval()
