"""gpt2lab against TransformerLens itself: every step name they share holds the same numbers in
the same layout, on the same weights; and TransformerLens's idioms work here.

TransformerLens is the oracle for the step names as transformers is for the logits: a
HookedTransformer is built from a config matching the gpt2lab model and given its weights by
TransformerLens's own GPT-2 conversion, with no processing (no folded layer norms, no centring).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import gpt2lab
from gpt2lab import trace as tr
from gpt2lab.errors import UsageError
from gpt2lab.hooks import GPT2LAB_ONLY, describe, get_act_name, head_axis, step_names

transformer_lens = pytest.importorskip("transformer_lens")
# TransformerLens 3.x announces HookedTransformer's successor; the comparison needs this one.
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")

PROMPT = "Mike is quick. He moves"  # 6 tokens, as many as tiny has heads
# Every step name both have, per block or once (TransformerLens's default GPT-2 hooks).
SHARED = {
    "hook_embed",
    "hook_pos_embed",
    "blocks.{L}.hook_resid_pre",
    "blocks.{L}.ln1.hook_scale",
    "blocks.{L}.ln1.hook_normalized",
    "blocks.{L}.attn.hook_q",
    "blocks.{L}.attn.hook_k",
    "blocks.{L}.attn.hook_v",
    "blocks.{L}.attn.hook_attn_scores",
    "blocks.{L}.attn.hook_pattern",
    "blocks.{L}.attn.hook_z",
    "blocks.{L}.hook_attn_out",
    "blocks.{L}.hook_resid_mid",
    "blocks.{L}.ln2.hook_scale",
    "blocks.{L}.ln2.hook_normalized",
    "blocks.{L}.mlp.hook_pre",
    "blocks.{L}.mlp.hook_post",
    "blocks.{L}.hook_mlp_out",
    "blocks.{L}.hook_resid_post",
    "ln_final.hook_scale",
    "ln_final.hook_normalized",
}
# TransformerLens's names for steps gpt2lab names otherwise.
SAME_STEP = {"unembed.hook_in": "ln_final.hook_out", "unembed.hook_out": "hook_logits"}


def hooked_transformer(model: gpt2lab.GPT2):
    """A HookedTransformer with ``model``'s config and weights, unprocessed."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    c = model.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer,
        d_model=c.n_embd,
        n_heads=c.n_head,
        d_head=c.head_dim,
        d_mlp=4 * c.n_embd,
        d_vocab=c.vocab_size,
        n_ctx=c.n_positions,
        act_fn="gelu_new",
        normalization_type="LN",
        eps=c.layer_norm_epsilon,
        default_prepend_bos=False,
    )
    hooked = HookedTransformer(cfg)
    # The conversion reads a transformers GPT-2's modules; gpt2lab keeps the same ones under
    # the same names, and ties the output layer to wte.
    gpt2 = SimpleNamespace(transformer=model.transformer, lm_head=model.transformer.wte)
    hooked.load_and_process_state_dict(
        convert_gpt2_weights(gpt2, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return hooked.eval()


@pytest.fixture(scope="module")
def tiny():
    return gpt2lab.load("tiny").eval()


def template(name: str) -> str:
    return describe(name).name


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("tiny", PROMPT), id="tiny"),
        # 4 positions and 4 heads: [B, H, T, D] and [B, T, H, D] have the same shape here, so
        # only the numbers can tell the layouts apart.
        pytest.param(("odd", [5, 17, 3, 42]), id="pos-equals-heads"),
    ],
)
def pair(request, tiny):
    """(gpt2lab trace, TransformerLens cache) of one prompt on the same weights."""
    which, prompt = request.param
    if which == "tiny":
        model = tiny
    else:
        torch.manual_seed(1)
        config = gpt2lab.GPT2Config(vocab_size=97, n_positions=16, n_embd=24, n_layer=2, n_head=4)
        model = gpt2lab.GPT2(config)
        with torch.no_grad():  # layer norms that are not the identity, so their steps differ
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))
    model.eval()
    trace = model.run_with_cache(prompt)
    _, cache = hooked_transformer(model).run_with_cache(trace.ids)
    return model, trace, cache


def test_the_shared_names_are_the_expected_ones(pair):
    model, trace, cache = pair
    ours = {template(n) for n in trace}
    theirs = {template(n) if n in step_names(model.config) else n for n in cache}
    assert ours & theirs == SHARED
    assert theirs - ours == set(SAME_STEP)  # the output layer's input and output
    assert ours - theirs == GPT2LAB_ONLY  # and gpt2lab's own are documented as such


def test_every_shared_name_has_transformer_lens_shape_and_values(pair):
    model, trace, cache = pair
    shared = [n for n in step_names(model.config) if template(n) in SHARED]
    assert len(shared) == 2 + 17 * model.config.n_layer + 2
    for name in shared:
        ours, theirs = trace[name], cache[name]
        assert ours.shape == theirs.shape, name
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0, msg=name)  # -inf == -inf
    for theirs, ours in SAME_STEP.items():
        torch.testing.assert_close(trace[ours], cache[theirs], atol=1e-4, rtol=0, msg=ours)


def test_the_layouts_tell_the_heads_from_the_positions(pair):
    """Where positions and heads are as many, a wrong layout has the right shape: read head 1 at
    position 2 both ways."""
    _, trace, cache = pair
    q = trace["blocks.0.attn.hook_q"]
    assert q.shape[1] == q.shape[2]  # 6 tokens, 6 heads (tiny); 4 and 4
    assert torch.allclose(q[0, 2, 1], cache["blocks.0.attn.hook_q"][0, 2, 1], atol=1e-4)
    assert not torch.allclose(q[0, 2, 1], q[0, 1, 2], atol=1e-2)
    assert head_axis("blocks.0.attn.hook_q") == 2
    assert head_axis("blocks.0.attn.hook_pattern") == 1
    assert head_axis("blocks.0.hook_resid_pre") is None


# --- idioms -----------------------------------------------------------------------------------
def test_short_keys_are_transformer_lens_get_act_name(tiny):
    from transformer_lens.utilities import get_act_name as tl_get_act_name

    cases = [
        ("pattern", 0),
        ("q", 1),
        ("k", 2, "attn"),
        ("v", 3),
        ("z", 4),
        ("attn_scores", 5),
        ("resid_pre", 0),
        ("resid_mid", 1),
        ("resid_post", 2),
        ("mlp_out", 3),
        ("attn_out", 4),
        ("pre", 5),
        ("post", 0),
        ("mlp_post", 1),
        ("scale", 2, "ln1"),
        ("normalized", 3, "ln2"),
        ("scale",),
        ("normalized",),
        ("embed",),
        ("pos_embed",),
        ("attn", 1),
        ("k6",),
        ("scale4ln1",),
        ("blocks.0.hook_resid_pre",),
    ]
    for case in cases:
        assert get_act_name(*case) == tl_get_act_name(*case), case
    trace = tiny.run_with_cache(PROMPT)
    assert torch.equal(trace["pattern", 0], trace["blocks.0.attn.hook_pattern"])
    assert torch.equal(trace["normalized", 1, "ln2"], trace["blocks.1.ln2.hook_normalized"])
    assert torch.equal(trace["resid_post", -1], trace["blocks.5.hook_resid_post"])
    assert torch.equal(trace["scale",], trace["ln_final.hook_scale"])
    for bad in (6, -7, "1"):
        with pytest.raises(UsageError, match="layer must be"):
            trace["pattern", bad]
    with pytest.raises(UsageError, match="now hook_attn_scores"):
        trace["blocks.0.attn.hook_masked_scores"]


def test_logits_and_trace_unpack_as_transformer_lens_pair(tiny):
    logits, trace = tiny.run_with_cache(PROMPT)
    assert isinstance(trace, tr.Trace)
    assert logits is trace.logits
    assert logits.shape == (1, 6, tiny.config.vocab_size)
    assert list(trace)[:2] == ["hook_embed", "hook_pos_embed"]  # iterating still gives names
    assert [n for n in trace][-1] == "hook_probs"
    assert dict(trace).keys() == set(trace.keys())


def test_run_with_hooks_takes_fwd_hooks_with_a_hook_object(tiny):
    seen = []

    def record(value, hook):
        seen.append((hook.name, hook.layer(), tuple(value.shape)))

    def zero_head_3(z, hook):  # TransformerLens's layout: [batch, pos, head, d_head]
        z[:, :, 3] = 0
        return z

    by_filter = tiny.run_with_hooks(
        PROMPT,
        fwd_hooks=[
            (lambda name: name.endswith("hook_pattern"), record),
            ("blocks.1.attn.hook_z", zero_head_3),
        ],
    )
    assert [s[:2] for s in seen] == [(f"blocks.{i}.attn.hook_pattern", i) for i in range(6)]
    assert seen[0][2] == (1, 6, 6, 6)
    ablated = tiny.run_with_hooks(PROMPT, [tr.ablate_head(1, 3)])  # the gpt2lab way, same thing
    assert torch.equal(by_filter, ablated)
    returned_none = tiny.run_with_hooks(PROMPT, fwd_hooks=[("blocks.0.hook_resid_pre", record)])
    assert seen[-1][:2] == ("blocks.0.hook_resid_pre", 0)
    assert not torch.allclose(ablated, returned_none, atol=1e-3)
    assert torch.equal(returned_none, tiny.run_with_hooks(PROMPT))


def test_to_tokens_and_to_string_with_explicit_bos(tiny):
    ids = tiny.to_tokens(PROMPT)
    assert ids.tolist() == [[16073, 318, 2068, 13, 679, 6100]]  # no BOS unless asked
    with_bos = tiny.to_tokens(PROMPT, prepend_bos=True)
    assert with_bos[0, 0] == 50256 and torch.equal(with_bos[:, 1:], ids)
    assert tiny.to_string(ids[0]) == PROMPT
    assert tiny.to_string(with_bos) == ["<|endoftext|>" + PROMPT]
    assert tiny.to_tokens(["a b", "c d"]).shape == (2, 2)
