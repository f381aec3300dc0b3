"""The chunked next-token loss equals plain cross-entropy over the full logits: value and grads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt2lab import loss as loss_module
from gpt2lab.config import GPT2Config
from gpt2lab.model import GPT2


@pytest.mark.parametrize("n_positions", [1, 7, 300, 513])  # below, between and above chunk sizes
def test_matches_cross_entropy_and_its_gradients(n_positions):
    torch.manual_seed(0)
    h = torch.randn(n_positions, 16, requires_grad=True)
    W = torch.randn(1000, 16, requires_grad=True)
    targets = torch.randint(0, 1000, (n_positions,))
    expected = F.cross_entropy(h @ W.T, targets)
    grad_h, grad_W = torch.autograd.grad(expected, (h, W))
    got = loss_module.next_token_loss(h, W, targets)
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
    got_h, got_W = torch.autograd.grad(got * 3.0, (h, W))  # scaled: backward uses grad_output
    assert torch.allclose(got_h, 3 * grad_h, atol=1e-6)
    assert torch.allclose(got_W, 3 * grad_W, atol=1e-6)


def test_model_loss_equals_cross_entropy_of_its_logits():
    torch.manual_seed(1)
    model = GPT2(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64))
    x, y = torch.randint(0, 50257, (2, 2, 40))
    logits = model(x)
    expected = F.cross_entropy(logits.reshape(-1, 50257), y.reshape(-1))
    expected.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x, y).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, reference[name], atol=1e-6), name
    with torch.no_grad():  # evaluation computes no gradients but the same value
        assert model(x, y).item() == pytest.approx(expected.item(), abs=1e-5)
