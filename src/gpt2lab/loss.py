"""logits -> loss: the next-token cross-entropy GPT-2 is trained to minimise, computed in chunks.

    loss = mean over positions of  -log softmax(h @ W_Eᵀ)[target]  =  logsumexp(z) - z[target]

With GPT-2's 50,257-token vocabulary the logits z are by far the largest tensor in training
(4,096 positions x 50,257 x 4 bytes = 823 MB). ``next_token_loss`` never holds them all: for each
chunk of positions it computes z, the loss, and right away the gradients, which have a closed
form: dloss/dz = softmax(z) - onehot(target). It gives the same loss and gradients as
``F.cross_entropy(h @ W_Eᵀ, targets)`` (a test checks both) in a fraction of the time and memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 256  # positions per chunk: 256 x 50,257 floats = 51 MB at a time, not 823


class _ChunkedUnembedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ W.T`` against ``targets``; gradients computed in the forward."""

    @staticmethod
    def forward(ctx, h: Tensor, W: Tensor, targets: Tensor) -> Tensor:
        n = h.shape[0]
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if needs_grad else None
        grad_W = torch.zeros_like(W) if needs_grad else None
        # Under autocast (bf16 on GPUs, or CPUs with AMX) all three matmuls run in its dtype;
        # the softmax and the sums stay in float32.
        autocast = torch.is_autocast_enabled(h.device.type)
        mm_dtype = torch.get_autocast_dtype(h.device.type) if autocast else W.dtype
        W_mm = W.to(mm_dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for start in range(0, n, CHUNK):
            hc, tc = h[start : start + CHUNK].to(mm_dtype), targets[start : start + CHUNK]
            z = (hc @ W_mm.T).float()  # [chunk, V] logits
            target_logit = z.gather(1, tc[:, None])
            z_max = z.amax(dim=-1, keepdim=True)
            exp_z = z.sub_(z_max).exp_()  # in place: one exp pass serves the loss and the grad
            sum_exp = exp_z.sum(dim=-1, keepdim=True)
            total += (z_max + sum_exp.log() - target_logit).sum()  # logsumexp(z) - z[target]
            if needs_grad:
                assert grad_h is not None and grad_W is not None  # made above when needs_grad
                dz = exp_z.div_(sum_exp)  # softmax
                dz[torch.arange(len(tc), device=tc.device), tc] -= 1.0  # minus the one-hot
                dz = dz.to(mm_dtype)
                grad_h[start : start + CHUNK] = dz @ W_mm
                grad_W += dz.T @ hc
        ctx.save_for_backward(grad_h, grad_W)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        grad_h, grad_W = ctx.saved_tensors
        scale = grad_out / ctx.n
        return grad_h * scale, grad_W * scale, None


def next_token_loss(h: Tensor, W_E: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (nats/token) of the logits ``h @ W_Eᵀ`` against ``targets``.

    ``h``: final normalized hidden states [..., C]; ``W_E``: token embedding [V, C];
    ``targets``: the next token at each position [...].
    """
    return _ChunkedUnembedCrossEntropy.apply(h.reshape(-1, h.shape[-1]), W_E, targets.reshape(-1))
