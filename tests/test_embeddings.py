"""Embedding analysis: nearest tokens, PCA maps, and the real GPT-2 position embeddings."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

import gpt2lab
from gpt2lab.embeddings import (
    load_raw_tensor,
    nearest_tokens,
    pca_2d,
    position_map,
    token_id,
    word_map,
    wpe_map,
)
from gpt2lab.errors import CheckpointError, UsageError
from gpt2lab.viz.plots import embedding_map, position_embedding_map

HAPPY = 3772  # GPT-2's id of " happy" (a word inside a sentence); "happy" is another token


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    config = gpt2lab.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64)
    return gpt2lab.GPT2(config, tokenizer=gpt2lab.get_tokenizer()).eval()


@pytest.fixture(scope="module")
def real_wpe():
    """GPT-2 124M's position embeddings [1024, 768], checked against the published sha256."""
    path = shared_path("gpt2-124M-partial", "tensors", "transformer.wpe.weight.f32le")
    tsv = shared_path("gpt2-124M-partial", "gpt2_tensor_sha256.tsv").read_text()
    published = next(
        line.split("\t")[1]
        for line in tsv.splitlines()
        if line.startswith("weights/gpt2/transformer.wpe.weight_gpt.bin")
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == published
    return load_raw_tensor(path, (1024, 768))


# --- nearest tokens ---------------------------------------------------------------------------
def test_nearest_tokens_are_the_highest_cosines_computed_directly(small):
    wte = small.transformer.wte.weight.detach()
    direct = F.cosine_similarity(wte, wte[HAPPY][None], dim=-1)
    direct[HAPPY] = -2.0  # the query itself is not its own neighbour
    expected = direct.topk(20)

    found = nearest_tokens(small, " happy", k=20)

    assert [n.id for n in found] == expected.indices.tolist()
    assert [n.cosine for n in found] == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert [n.cosine for n in found] == sorted((n.cosine for n in found), reverse=True)
    assert HAPPY not in [n.id for n in found]
    tok = small.tokenizer
    assert [n.token for n in found] == [tok.id_to_token(n.id) for n in found]


def test_query_may_be_an_id_a_word_or_a_vocabulary_entry(small):
    assert token_id(small, " happy") == token_id(small, "Ġhappy") == token_id(small, HAPPY)
    assert token_id(small, "happy") != HAPPY  # the same word at the start of a text
    assert nearest_tokens(small, "Ġhappy", k=5) == nearest_tokens(small, HAPPY, k=5)


def test_a_planted_near_copy_is_the_nearest_token():
    torch.manual_seed(1)
    config = gpt2lab.GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64)
    model = gpt2lab.GPT2(config, tokenizer=gpt2lab.get_tokenizer())
    cat = token_id(model, " cat")
    dog = token_id(model, " dog")
    with torch.no_grad():
        wte = model.transformer.wte.weight
        wte[cat] = wte[dog] + 1e-4 * torch.randn(32)  # rows have length ~0.1
    [nearest] = nearest_tokens(model, " dog", k=1)
    assert (nearest.id, nearest.token) == (cat, "Ġcat")
    assert nearest.cosine > 0.9999


def test_words_of_several_tokens_are_refused_with_their_tokens(small):
    with pytest.raises(UsageError, match=r"3 tokens \['ĠShaw', 'sh', 'ank'\]"):
        nearest_tokens(small, " Shawshank")
    with pytest.raises(UsageError, match=r"\['joy', 'ful'\].*did you mean ' joyful'"):
        word_map(small, [" happy", "joyful"])
    with pytest.raises(UsageError, match="outside the vocabulary"):
        nearest_tokens(small, 50257)
    with pytest.raises(UsageError, match="k must be"):
        nearest_tokens(small, HAPPY, k=0)


# --- PCA --------------------------------------------------------------------------------------
def test_pca_of_points_on_a_plane_keeps_every_distance():
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(10, 2, generator=gen, dtype=torch.float64))
    plane = torch.randn(30, 2, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    points = 5.0 + plane @ basis.T  # [30, 10], on a 2-D plane away from the origin

    coords, explained = pca_2d(points)

    assert coords.shape == (30, 2) and explained.shape == (2,)
    exact = "donot_use_mm_for_euclid_dist"  # the faster matrix-product form rounds at ~1e-7
    assert torch.allclose(
        torch.cdist(coords, coords, compute_mode=exact),
        torch.cdist(points, points, compute_mode=exact),
        atol=1e-10,
    )
    assert torch.allclose(coords.mean(dim=0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert explained.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert explained[0] > explained[1]


def test_pca_signs_follow_the_largest_loading():
    t = torch.linspace(-3.0, 5.0, 9, dtype=torch.float64)
    s = torch.tensor([1.0, -1, 1, -1, 0, -1, 1, -1, 1], dtype=torch.float64)  # uncorrelated with t
    points = torch.zeros(9, 10, dtype=torch.float64)
    points[:, 3], points[:, 7] = t, s  # largest spread along axis 3, then axis 7

    coords, _ = pca_2d(points)
    assert torch.allclose(coords, torch.stack([t - t.mean(), s], 1), atol=1e-12)
    # The axes are +e3 and +e7 whatever the data, so flipping the points flips their coordinates
    # and reordering them reorders the coordinates, never flips them.
    flipped, _ = pca_2d(-points)
    assert torch.allclose(flipped, -coords, atol=1e-12)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pca_2d(points[order])[0], coords[order], atol=1e-12)


def test_pca_refuses_what_has_no_two_directions():
    with pytest.raises(UsageError, match="at least 2 points"):
        pca_2d(torch.randn(1, 5))
    with pytest.raises(UsageError, match="identical"):
        pca_2d(torch.ones(4, 5))


# --- maps -------------------------------------------------------------------------------------
def test_word_map_holds_the_words_token_embeddings_and_their_pca(small):
    words = [" happy", " glad", " sad", " dog", " cat"]
    result = word_map(small, words)
    ids = [token_id(small, w) for w in words]
    assert result.labels == tuple(words) and result.ids == tuple(ids)
    assert torch.equal(result.vectors, small.transformer.wte.weight[ids].detach())
    coords, explained = pca_2d(result.vectors)
    assert torch.equal(result.coords, coords) and torch.equal(result.explained, explained)


def test_position_map_is_what_the_first_block_sees(small):
    positions = [0, 1, 2, 10, 63]
    result = position_map(small, " dog", positions)
    dog = token_id(small, " dog")
    with torch.no_grad():
        x0 = small.embed(torch.full((1, 5), dog), torch.tensor([positions]))[0]
    assert result.token == dog and result.positions == tuple(positions)
    assert torch.allclose(result.vectors, x0, atol=1e-7)
    # One token embedding added to every point moves the cloud, not its shape: PCA centres it.
    alone = wpe_map(small.transformer.wpe.weight, positions)
    assert torch.allclose(result.coords, alone.coords, atol=1e-6)
    assert alone.token is None and alone.token_cosine is None
    token = small.transformer.wte.weight[dog].detach()
    cosine = (result.vectors @ token) / (result.vectors.norm(dim=-1) * token.norm())
    assert torch.allclose(result.token_cosine, cosine, atol=1e-6)
    with pytest.raises(UsageError, match="positions must lie in"):
        position_map(small, " dog", [0, 64])


# --- raw tensor files -------------------------------------------------------------------------
def test_load_raw_tensor_reads_little_endian_floats_and_checks_the_size(tmp_path):
    values = np.arange(12, dtype="<f4").reshape(3, 4) / 7
    path = tmp_path / "t.f32le"
    values.tofile(path)
    assert torch.equal(load_raw_tensor(path, (3, 4)), torch.from_numpy(values))
    with pytest.raises(CheckpointError, match=r"48 bytes.*needs 64"):
        load_raw_tensor(path, (4, 4))
    np.array([1.0, np.nan], dtype="<f4").tofile(path)
    with pytest.raises(CheckpointError, match="NaN"):
        load_raw_tensor(path, (2,))


# --- the real GPT-2 position embeddings -------------------------------------------------------
def test_real_gpt2_positions_are_a_smooth_curve(real_wpe):
    assert real_wpe.shape == (1024, 768) and real_wpe.dtype == torch.float32
    neighbours = F.cosine_similarity(real_wpe[:-1], real_wpe[1:], dim=-1).mean().item()
    far_apart = F.cosine_similarity(real_wpe[:-512], real_wpe[512:], dim=-1).mean().item()
    # Measured: 0.9974 for p, p+1 and 0.2756 for p, p+512.
    assert neighbours > 0.99
    assert 0.15 < far_apart < 0.4


def test_real_gpt2_positions_lie_mostly_in_a_plane(real_wpe):
    result = wpe_map(real_wpe)
    # Measured: 33.4% and 32.3% of the variance, two near-equal shares: a circle-like curve.
    first, second = result.explained.tolist()
    assert 0.30 < second <= first < 0.37
    assert 0.62 < first + second < 0.70
    assert result.coords.shape == (1024, 2) and result.positions == tuple(range(1024))


# --- the bundled tiny model -------------------------------------------------------------------
# Measured: " cat" is the nearest token to " dog" (cosine 0.855), " boy" the nearest to " girl"
# (0.785); the test asks only for the top 5, so that a retrained tiny still passes.
@pytest.mark.parametrize(("word", "neighbour"), [(" dog", "Ġcat"), (" girl", "Ġboy")])
def test_tiny_puts_related_words_next_to_each_other(tiny, word, neighbour):
    assert neighbour in [n.token for n in nearest_tokens(tiny, word, k=5)]


# --- plots ------------------------------------------------------------------------------------
def test_embedding_map_draws_each_word_at_its_coordinates(small, tmp_path):
    result = word_map(small, [" happy", " glad", " sad", " dog", " cat", " rabbit"])
    fig = embedding_map(result)
    ax = fig.axes[0]
    assert np.allclose(ax.collections[0].get_offsets(), result.coords.numpy())
    assert [t.get_text() for t in ax.texts] == list(result.labels)
    assert [t.xy for t in ax.texts] == [tuple(p) for p in result.coords.numpy()]
    assert f"{result.explained[0].item():.1%}" in ax.get_xlabel()
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"


def test_position_embedding_map_joins_positions_in_order_and_colours_them(small):
    positions = list(range(0, 64, 4))
    result = position_map(small, " dog", positions)
    fig = position_embedding_map(result)
    ax, colourbar = fig.axes
    coords = result.coords.numpy()
    assert np.allclose(ax.lines[0].get_xydata(), coords)
    assert np.allclose(ax.collections[0].get_offsets(), coords)
    assert ax.collections[0].get_array().tolist() == positions
    assert colourbar.get_ylabel() == "position"
    assert [t.get_text() for t in ax.texts] == ["0", "60"]
    assert "' dog'" in ax.get_title()
