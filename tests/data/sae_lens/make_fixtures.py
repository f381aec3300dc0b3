"""Writes the SAE Lens fixtures: two small SAEs saved by sae-lens itself (``standard``, ReLU, and
``topk``) and, in ``expected.safetensors``, what sae-lens computes with them on a fixed input
(``x``, then ``<kind>_encode`` and ``<kind>_decode``). tests/test_sae.py checks gpt2lab gets the
same numbers without importing sae-lens (which takes long to import); the slow test there also
compares against the live package. Run: python tests/data/sae_lens/make_fixtures.py"""

from pathlib import Path

import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
D_IN, D_SAE = 8, 24


def randomize(sae: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def main() -> None:
    meta = SAEMetadata(hook_name="blocks.1.hook_resid_pre", model_name="test")
    saes = {
        "standard": StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta)),
        "topk": TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5, metadata=meta)),
    }
    x = torch.randn(6, D_IN, generator=torch.Generator().manual_seed(0))
    expected = {"x": x}
    for seed, (kind, sae) in enumerate(saes.items()):
        randomize(sae, seed + 1)
        sae.save_model(HERE / kind)
        with torch.no_grad():
            f = sae.encode(x)
            expected[f"{kind}_encode"] = f
            expected[f"{kind}_decode"] = sae.decode(f)
    save_file(expected, HERE / "expected.safetensors")


if __name__ == "__main__":
    main()
