"""The fast path (gpt2lab.fast) computes what the named steps compute: the standing equivalence."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import gpt2lab
from gpt2lab import fast, quantize
from gpt2lab.errors import UsageError
from gpt2lab.model import GPT2


@pytest.fixture(scope="module")
def gpt2_124m() -> GPT2:
    torch.manual_seed(0)
    return GPT2(gpt2lab.preset("gpt2")).eval()


def both_paths(model: GPT2, run):
    """(fast result, named-step result) of run(model)."""
    fast_result = run(model)
    model.fast_path = False
    try:
        return fast_result, run(model)
    finally:
        model.fast_path = True


def test_fast_path_is_taken_only_without_hooks_in_eval_mode(gpt2_124m):
    assert gpt2_124m.uses_fast_path(None)
    assert not gpt2_124m.uses_fast_path(gpt2lab.hooks.Hooks())
    gpt2_124m.train()
    try:
        assert not gpt2_124m.uses_fast_path(None)  # training keeps the steps' dropout
    finally:
        gpt2_124m.eval()


@torch.no_grad()
def test_float32_logits_equal_on_the_124m_config(gpt2_124m):
    ids = torch.randint(0, 50257, (2, 96), generator=torch.Generator().manual_seed(1))
    fast_logits, step_logits = both_paths(gpt2_124m, lambda m: m(ids))
    assert (fast_logits - step_logits).abs().max() <= 1e-4
    assert torch.equal(fast_logits.argmax(-1), step_logits.argmax(-1))


def test_float32_greedy_tokens_equal_on_the_124m_config(gpt2_124m):
    prompts = [[464, 2068, 7586, 21831], [15496, 11, 995, 0, 314, 716, 257]]  # padded batch
    fast_ids, step_ids = both_paths(gpt2_124m, lambda m: m.generate(prompts, 12, greedy=True))
    assert fast_ids == step_ids
    assert [len(row) for row in fast_ids] == [12, 12]


@torch.no_grad()
def test_cache_chunks_and_padding_match_the_steps(tiny):
    """Several new positions after cached ones (an explicit mask), and left padding."""
    ids = torch.tensor([tiny.tokenizer.encode("Once upon a time there was a little dog.")])

    def chunked(m: GPT2) -> torch.Tensor:
        cache = m.new_cache(1)
        return torch.cat([m(ids[:, :4], cache=cache), m(ids[:, 4:], cache=cache)], dim=1)

    fast_logits, step_logits = both_paths(tiny, chunked)
    assert (fast_logits - step_logits).abs().max() <= 1e-4
    assert (fast_logits - tiny(ids)).abs().max() <= 1e-4

    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = padded != 0
    mask[0, 3:] = True  # only the 3 zeros put in front are padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    fast_pad, step_pad = both_paths(
        tiny, lambda m: m(padded, attention_mask=mask, positions=positions)
    )
    assert (fast_pad - step_pad)[:, 3:].abs().max() <= 1e-4
    assert (fast_pad[:, 3:] - tiny(ids)).abs().max() <= 1e-4


def test_gradients_flow_through_the_fast_path(tiny):
    ids = torch.tensor([tiny.tokenizer.encode("Lily had a red ball.")])
    embedding = tiny.transformer.wte.weight
    grads = []
    for use_fast in (True, False):
        tiny.fast_path = use_fast
        embedding.grad = None
        tiny(ids)[0, -1, 11].backward()
        grads.append(embedding.grad.clone())
    tiny.fast_path = True
    embedding.grad = None
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@torch.no_grad()
def test_weights_changed_in_place_are_seen(tmp_path):
    model = gpt2lab.load("tiny")
    ids = torch.tensor([[464, 2068, 7586]])
    before = model(ids)
    model.transformer.h[0].mlp.c_fc.weight.mul_(0.5)  # e.g. an optimizer step
    after = model(ids)
    model.fast_path = False
    assert not torch.allclose(before, after)
    assert (after - model(ids)).abs().max() <= 1e-4


@torch.no_grad()
def test_bfloat16_fast_path_matches_bfloat16_steps():
    model = gpt2lab.load("tiny", dtype=torch.bfloat16)
    reference = gpt2lab.load("tiny")
    ids = torch.tensor([model.tokenizer.encode("Once upon a time there was a little girl named")])
    fast_logits, step_logits = both_paths(model, lambda m: m(ids).float())
    # Both round to bfloat16 (8 bits of mantissa) at different places: compare the error each
    # makes against float32 rather than asking them to agree bit for bit.
    exact = reference(ids)
    fast_err = (fast_logits - exact).abs().max()
    step_err = (step_logits - exact).abs().max()
    assert fast_err <= 2 * step_err + 0.05
    assert torch.equal(fast_logits[0, -1].topk(3).indices, exact[0, -1].topk(3).indices)


def test_int8_quantization_is_per_output_channel_and_idempotent():
    torch.manual_seed(0)
    w = torch.randn(64, 48) * torch.linspace(0.01, 3, 64)[:, None]  # rows of very different size
    q, scale = quantize.quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (64,)
    assert q.abs().amax(dim=1).eq(127).all()  # every channel uses its full range
    deq = quantize.dequantize_int8(q, scale)
    assert ((deq - w).abs() <= scale.float()[:, None] * 0.51 + 1e-6).all()  # half a step at most
    q2, scale2 = quantize.quantize_int8(deq)
    assert torch.equal(q, q2) and torch.equal(scale, scale2)


@torch.no_grad()
def test_int8_model_fast_path_matches_its_steps():
    model = gpt2lab.load("tiny", quantize="int8")
    assert model.quantized == "int8"
    c_fc = model.transformer.h[0].mlp.c_fc.weight
    q, scale = quantize.quantize_int8(c_fc.t())
    rounded = quantize.dequantize_int8(q, scale).t()
    assert torch.equal(rounded, c_fc)  # the parameter is the rounding
    ids = torch.tensor([model.tokenizer.encode("Once upon a time there was a little girl named")])
    fast_logits, step_logits = both_paths(model, lambda m: m(ids))
    # The int8 kernel multiplies in bfloat16; the steps in float32 with the same rounded weights.
    assert (fast_logits - step_logits).abs().max() < 0.25
    assert torch.equal(fast_logits[0, -1].topk(3).indices, step_logits[0, -1].topk(3).indices)
    assert isinstance(fast.fast_weights(model).layers[0].mlp_in.c_fc, fast.Int8)


@torch.no_grad()
def test_int8_kernel_few_and_many_rows_multiply_the_same_rounded_weights():
    """Decoding's few rows go through the int8 kernel (bfloat16), a prompt's many rows through
    the same rounding in bfloat16 or float32: each row gets x @ (q · s)ᵀ + b."""
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 80) * 0.05, torch.randn(80) * 0.1  # [in, out]
    kernel = fast.Int8(weight, bias)
    rounded = quantize.dequantize_int8(kernel.q, kernel.scale).t()  # [in, out]
    x = torch.randn(kernel.many_rows + 3, 96)
    want = x @ rounded + bias
    few, many = kernel(x[:2]), kernel(x)
    assert few.dtype == many.dtype == torch.float32 and many.shape == (len(x), 80)
    assert (few - want[:2]).abs().max() < 0.05  # bfloat16 products
    tolerance = 0.05 if kernel.native_bf16 else 1e-4  # float32 where bfloat16 is emulated
    assert (many - want).abs().max() < tolerance
    assert kernel(x.to(torch.bfloat16)).dtype == torch.bfloat16


@torch.no_grad()
def test_transposed_kernel_reads_an_out_in_copy_and_shares_the_tied_unembedding():
    """Where oneDNN has no bfloat16 kernels the weights are read [out, in] by F.linear; the
    tied unembedding, W_E [V, C], is that layout already and is not copied."""
    torch.manual_seed(0)
    weight, bias = torch.randn(48, 40).bfloat16(), torch.randn(40).bfloat16()  # [in, out]
    kernel = fast.Transposed(weight, bias)
    assert kernel.weight_t.shape == (40, 48) and kernel.weight_t.is_contiguous()
    x = torch.randn(3, 48).bfloat16()
    want = x.float() @ weight.float() + bias.float()
    assert (kernel(x).float() - want).abs().max() < 0.1  # bfloat16 sums of 48 products
    wte = torch.randn(100, 48).bfloat16()  # [V, C]
    assert fast.Transposed(wte.t(), None).weight_t.data_ptr() == wte.data_ptr()
    native = fast.onednn_has_kernels(torch.bfloat16)
    assert fast.kernel_kind(weight, None) is (fast.Prepacked if native else fast.Transposed)


def test_int8_activations_are_bfloat16_only_where_multiplied_natively():
    """bfloat16 on a GPU and on CPUs with oneDNN's bfloat16 kernels; float32 elsewhere, where
    every bfloat16 norm and activation would be emulated."""
    native = fast.onednn_has_kernels(torch.bfloat16)
    assert fast.int8_activations("cpu") == (torch.bfloat16 if native else torch.float32)
    assert fast.int8_activations(torch.device("cuda", 0)) == torch.bfloat16
    assert fast.int8_activations("cuda") == torch.bfloat16


def test_quantize_rejects_unknown_methods(tiny):
    with pytest.raises(UsageError, match="int8"):
        gpt2lab.load("tiny").quantize("int4")


@torch.no_grad()
def test_the_fast_state_is_not_saved_and_follows_the_parameters():
    """model.fast_state is a plain attribute: no state-dict entry, and kernels made before a
    .to() are never used after it."""
    model = gpt2lab.load("tiny")
    names = set(model.state_dict())
    ids = torch.tensor([model.tokenizer.encode("Tom saw a big")])
    model(ids)
    before = model.fast_state.weights
    assert before is not None and set(model.state_dict()) == names
    model.to(torch.bfloat16)
    model(ids)
    assert model.fast_state.weights is not before
    assert model.fast_state.weights.ln_f[0].dtype == torch.bfloat16


def test_cli_runs_with_dtype_and_quantize(capsys):
    from gpt2lab.cli import main

    argv = ["generate", "Once upon a time", "--model", "tiny", "--greedy", "--max-new-tokens", "8"]
    assert main([*argv, "--dtype", "bfloat16", "--quantize", "int8"]) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")


# --- the static decoder (what generation replays as a CUDA graph on a GPU) ---------------------
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]
STORY = "Once upon a time there was a little girl named Lily. She loved to play outside."


def records_graphs_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let generation use the StaticDecoder on a CPU too (eagerly: a CPU records no graph)."""
    monkeypatch.setattr(fast, "decodes_with_graphs", lambda device: True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.bfloat16, 0.15)])
@torch.no_grad()
def test_static_decoder_steps_equal_a_full_forward_pass(device, dtype, tolerance):
    model = gpt2lab.load("tiny", dtype=dtype).to(device)
    ids = torch.tensor([model.tokenizer.encode(STORY)], device=device)
    T = ids.shape[1]
    full = model(ids).float()
    decoder = fast.StaticDecoder(model, batch=1, max_len=T + 5)
    assert (decoder.graph is not None) == (device == "cuda")
    cache = decoder.start(torch.ones(1, T, dtype=torch.bool, device=device))
    model(ids[:, :4], cache=cache)  # the prompt, eagerly
    for t in range(4, T):
        logits = decoder(ids[:, t], torch.tensor([[t]], device=device)).float()
        assert (logits - full[:, t]).abs().max() <= tolerance, t
        assert logits.argmax() == full[0, t].argmax()
    assert cache.length == T


@pytest.mark.parametrize("device", DEVICES)
def test_generation_through_the_static_decoder_equals_the_named_steps(device, monkeypatch):
    records_graphs_everywhere(monkeypatch)
    model = gpt2lab.load("tiny").to(device)
    prompts = [model.tokenizer.encode(STORY[:40]), model.tokenizer.encode("Tom saw a big")]
    sampled = {"top_k": 20, "seed": 3, "stop_at_eos": False}
    fast_greedy, step_greedy = both_paths(model, lambda m: m.generate(prompts, 24, greedy=True))
    fast_sampled, step_sampled = both_paths(model, lambda m: m.generate(prompts, 24, **sampled))
    assert fast_greedy == step_greedy and fast_sampled == step_sampled
    decoder = model.fast_state.decoder
    assert decoder.shape == (2, 128)  # lengths are rounded up to 128 slots

    # The next generation of the same shape reuses the decoder (one recorded graph), and its
    # prompts see nothing of the last one's cache.
    others = [model.tokenizer.encode("The dog ran to the park and"), prompts[0][:5]]
    again, step_again = both_paths(model, lambda m: m.generate(others, 24, greedy=True))
    assert model.fast_state.decoder is decoder
    assert again == step_again


def test_no_decoder_without_steps_to_decode_or_with_cuda_graphs_false(monkeypatch):
    records_graphs_everywhere(monkeypatch)
    model = gpt2lab.load("tiny")
    assert model.generate(STORY[:30], 1, greedy=True)  # the prompt's pass gives the one token
    model.cuda_graphs = False
    assert model.generate(STORY[:30], 5, greedy=True)
    assert model.fast_state.decoder is None


@pytest.mark.parametrize("device", DEVICES)
def test_an_unfinished_stream_keeps_its_decoder_to_itself(device, monkeypatch):
    records_graphs_everywhere(monkeypatch)
    model = gpt2lab.load("tiny").to(device)
    alone = model.generate(STORY[:30], 16, greedy=True, stop_at_eos=False)
    stream = model.generate(STORY[:30], 16, greedy=True, stop_at_eos=False, stream=True)
    first = [next(stream) for _ in range(5)]
    other = model.generate("Tom saw a big", 16, greedy=True, stop_at_eos=False)  # same shape
    assert first + list(stream) == alone
    assert other == model.generate("Tom saw a big", 16, greedy=True, stop_at_eos=False)


@pytest.mark.parametrize("device", DEVICES)
def test_generations_in_threads_each_get_their_own_decoder(device, monkeypatch):
    """As the web app runs them: a graph may be recorded while another thread decodes."""
    records_graphs_everywhere(monkeypatch)
    model = gpt2lab.load("tiny").to(device)
    prompts = ["Once upon a time", "Tom saw a big dog", "Lily"]

    def run(prompt: str) -> list[int]:
        return model.generate(prompt, 20, greedy=True, stop_at_eos=False)

    alone = [run(p) for p in prompts]
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(run, prompts * 3)) == alone * 3


@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_the_decoder_is_remade_when_the_weights_change(device, monkeypatch):
    records_graphs_everywhere(monkeypatch)
    model = gpt2lab.load("tiny").to(device)
    before = model.generate(STORY[:30], 12, greedy=True, stop_at_eos=False)
    decoder = model.fast_state.decoder
    model.transformer.h[2].mlp.c_fc.weight.mul_(-1.0)  # e.g. an optimizer step
    after = model.generate(STORY[:30], 12, greedy=True, stop_at_eos=False)
    assert model.fast_state.decoder is not decoder
    model.fast_path = False
    assert after == model.generate(STORY[:30], 12, greedy=True, stop_at_eos=False) != before


@GPU
def test_gpu_float32_logits_and_graphed_tokens_equal_the_named_steps():
    torch.manual_seed(0)
    model = GPT2(gpt2lab.preset("gpt2")).eval().cuda()
    ids = torch.randint(0, 50257, (2, 96), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.no_grad():
        fast_logits, step_logits = both_paths(model, lambda m: m(ids))
    assert (fast_logits - step_logits).abs().max() <= 1e-4
    prompts = [[464, 2068, 7586, 21831], [15496, 11, 995, 0, 314, 716, 257]]
    fast_ids, step_ids = both_paths(model, lambda m: m.generate(prompts, 16, greedy=True))
    assert model.fast_state.decoder.graph is not None
    assert fast_ids == step_ids
