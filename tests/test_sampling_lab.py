"""Sampling lab: ``explain_sampling`` shows one step stage by stage and replays generate's draw."""

from __future__ import annotations

import json
import math

import pytest
import torch

import gpt2lab
from gpt2lab.errors import UsageError
from gpt2lab.generate import SamplingSettings, explain_sampling

PROMPT = "Mike is quick. He moves"


def logits_of(probs: list[float]) -> torch.Tensor:
    """Logits whose softmax is ``probs`` (log p, shifted so they are not already normalised)."""
    return torch.tensor(probs, dtype=torch.float64).log().float() + 3.0


def test_rows_are_the_most_likely_tokens_in_order():
    logits = logits_of([0.1, 0.3, 0.5, 0.1])
    ex = explain_sampling(logits, SamplingSettings(), top=3)
    assert [r.token_id for r in ex.rows] == [2, 1, 0]
    assert [r.logit for r in ex.rows] == pytest.approx([math.log(p) + 3 for p in (0.5, 0.3, 0.1)])
    assert [r.prob_before for r in ex.rows] == pytest.approx([0.5, 0.3, 0.1])
    assert all(r.token is None for r in ex.rows)
    assert (ex.kept_top_k, ex.effective_k, ex.mass_kept) == (4, 4, pytest.approx(1.0))


def test_temperature_divides_the_logits():
    probs = [0.5, 0.3, 0.15, 0.05]
    logits = logits_of(probs)
    ex = explain_sampling(logits, SamplingSettings(temperature=2.0), top=4)
    assert [r.scaled_logit for r in ex.rows] == pytest.approx((logits / 2).tolist())
    # softmax(log p / 2) = sqrt(p) / sum(sqrt(p)): T = 2 flattens the distribution.
    roots = [math.sqrt(p) for p in probs]
    flattened = [r / sum(roots) for r in roots]
    assert [r.prob_before for r in ex.rows] == pytest.approx(flattened)
    assert [r.prob for r in ex.rows] == pytest.approx(flattened)


def test_top_k_counts_what_it_keeps():
    ex = explain_sampling(logits_of([0.5, 0.3, 0.15, 0.05]), SamplingSettings(top_k=2), top=4)
    assert ex.kept_top_k == ex.effective_k == 2
    assert [r.kept_top_k for r in ex.rows] == [True, True, False, False]
    assert [r.prob for r in ex.rows] == pytest.approx([0.625, 0.375, 0.0, 0.0])
    assert ex.mass_kept == pytest.approx(0.8)


def test_top_p_effective_k_and_renormalised_probabilities():
    ex = explain_sampling(logits_of([0.5, 0.3, 0.1, 0.1]), SamplingSettings(top_p=0.75), top=4)
    # 0.5 < 0.75, 0.5 + 0.3 = 0.8 >= 0.75: two tokens remain, holding 0.8 of the mass.
    assert ex.kept_top_k == 4
    assert ex.effective_k == 2
    assert [r.kept_top_p for r in ex.rows] == [True, True, False, False]
    assert ex.mass_kept == pytest.approx(0.8)
    assert [r.prob for r in ex.rows] == pytest.approx([0.625, 0.375, 0.0, 0.0])
    assert sum(r.prob for r in ex.rows if r.kept_top_p) == pytest.approx(1.0)
    assert ex.chosen in (0, 1)
    assert ex.chosen_prob == pytest.approx(0.625 if ex.chosen == 0 else 0.375)


def test_filters_compose_like_distribution():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 3
    settings = SamplingSettings(temperature=0.7, top_k=50, top_p=0.8, seed=1)
    ex = explain_sampling(logits, settings, top=60)
    probs = settings.distribution(logits[None])[0]
    assert [r.prob for r in ex.rows] == pytest.approx([float(probs[r.token_id]) for r in ex.rows])
    assert ex.kept_top_k == 50
    assert ex.effective_k == int((probs > 0).sum()) < 50
    assert all(r.kept_top_k for r in ex.rows if r.kept_top_p)
    assert sum(r.prob for r in ex.rows) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "settings", [SamplingSettings(temperature=0), SamplingSettings(greedy=True)]
)
def test_greedy_chooses_the_argmax(settings):
    ex = explain_sampling(logits_of([0.1, 0.3, 0.5, 0.1]), settings, top=4)
    assert ex.chosen == 2
    assert ex.chosen_prob == 1.0
    assert (ex.kept_top_k, ex.effective_k) == (1, 1)
    assert [r.prob for r in ex.rows] == [1.0, 0.0, 0.0, 0.0]
    assert [r.prob_before for r in ex.rows] == pytest.approx([0.5, 0.3, 0.1, 0.1])


def test_settings_and_shapes_are_validated():
    logits = logits_of([0.5, 0.5])
    with pytest.raises(UsageError, match="top_p"):
        explain_sampling(logits, SamplingSettings(top_p=1.5))
    with pytest.raises(UsageError, match="top_k"):
        explain_sampling(logits, SamplingSettings(top_k=3))
    with pytest.raises(UsageError, match=r"\[V\]"):
        explain_sampling(logits[None], SamplingSettings())
    with pytest.raises(UsageError, match="top"):
        explain_sampling(logits, SamplingSettings(), top=0)


def test_to_dict_is_json_with_token_text():
    tok = gpt2lab.get_tokenizer()
    logits = torch.full((tok.vocab_size,), -5.0)
    logits[tok.encode(" Shaw")[0]] = 5.0
    ex = explain_sampling(logits, SamplingSettings(seed=0), top=2, tokenizer=tok)
    assert ex.rows[0].token == " Shaw"
    data = json.loads(json.dumps(ex.to_dict()))
    assert data["settings"]["seed"] == 0
    assert data["rows"][0]["token_id"] == 18193
    assert set(data["rows"][0]) == {
        "token_id",
        "token",
        "logit",
        "scaled_logit",
        "prob_before",
        "kept_top_k",
        "kept_top_p",
        "prob",
    }
    assert {"kept_top_k", "effective_k", "mass_kept", "chosen", "chosen_prob"} <= set(data)


# --- the draw replays generate -----------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = gpt2lab.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64)
    return gpt2lab.GPT2(config, tokenizer=gpt2lab.get_tokenizer()).eval()


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"temperature": 0.7},
        {"temperature": 1.3, "top_k": 50},
        {"top_p": 0.5},
        {"temperature": 0.8, "top_k": 200, "top_p": 0.9},
        {"temperature": 0},
    ],
)
def test_chosen_is_the_first_generated_token(model, knobs):
    ids = model.tokenizer.encode(PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0, -1]
    chosen = set()
    for seed in range(5):
        ex = explain_sampling(
            logits, SamplingSettings(seed=seed, **knobs), tokenizer=model.tokenizer
        )
        first = model.generate(PROMPT, 1, seed=seed, stop_at_eos=False, **knobs)
        assert ex.chosen == first[0], seed
        chosen.add(ex.chosen)
    if knobs.get("temperature") != 0:
        assert len(chosen) > 1  # the seeds really drew different tokens
