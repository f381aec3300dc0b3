"""The figures of gpt2lab.viz.plots show the library's own values: each test reads the plotted data
back out of the figure (image arrays, bar lengths, line points, texts) and compares it with a
result the test computes itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpt2lab.errors import UsageError
from gpt2lab.inspect_view import inspect_prompt
from gpt2lab.lens import direct_logit_attribution, lens_points, logit_lens
from gpt2lab.viz import plots

PROMPT = "Mike is quick. He moves"


@pytest.fixture(scope="module")
def trace(tiny):
    return tiny.run_with_cache(PROMPT, "blocks.*.attn.hook_pattern")


@pytest.fixture(scope="module")
def lens(tiny):
    return logit_lens(tiny, PROMPT, k=3, target="next")


def texts(labels) -> list[str]:
    return [label.get_text() for label in labels]


def short(point: str) -> str:
    return point.replace("blocks.", "b").replace("hook_", "")


def test_next_token_bars_are_the_next_token_probabilities(tiny):
    ins = inspect_prompt(tiny, PROMPT, top=4)
    probs, ids = torch.softmax(tiny(torch.tensor([ins.ids]))[0, -1].float(), -1).topk(4)
    ax = plots.next_token_bars(ins).axes[0]
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == pytest.approx(probs.tolist(), abs=1e-6)
    assert texts(ax.get_yticklabels()) == [repr(tiny.tokenizer.decode([i])) for i in ids.tolist()]
    assert ax.yaxis_inverted()  # the most likely at the top
    assert repr(" moves") in ax.get_title()


def test_logit_lens_grid_shows_the_top_token_and_its_probability(tiny, lens):
    ax = plots.logit_lens_grid(lens).axes[0]
    P, T = len(lens.points), len(lens.tokens)
    np.testing.assert_allclose(ax.images[0].get_array(), lens.top_probs[:, :, 0].numpy())
    cells = texts(ax.texts)
    assert cells == [repr(lens.top_tokens[p][t][0]) for p in range(P) for t in range(T)]
    assert texts(ax.get_yticklabels()) == [short(p) for p in lens_points(tiny.config.n_layer)]
    tokens = [tiny.tokenizer.decode([i]) for i in tiny.tokenizer.encode(PROMPT)]
    assert texts(ax.get_xticklabels()) == [repr(t) for t in tokens]


def test_rank_lines_follow_the_targets_rank_through_the_layers(lens):
    ax = plots.rank_lines(lens).axes[0]
    with_target = [t for t in range(len(lens.tokens)) if lens.target_ids[t] >= 0]
    assert len(ax.lines) == len(with_target) == len(lens.tokens) - 1  # "next": none at the end
    for line, t in zip(ax.lines, with_target):
        np.testing.assert_array_equal(line.get_ydata(), lens.target_rank[:, t].numpy() + 1)
        np.testing.assert_array_equal(line.get_xdata(), np.arange(len(lens.points)))
    assert ax.get_yscale() == "log" and ax.yaxis_inverted()
    legend = texts(ax.get_legend().get_texts())
    assert legend == [f"{t} {lens.tokens[t]!r}" for t in with_target]

    one = plots.rank_lines(lens, position=2).axes[0]
    assert len(one.lines) == 1
    np.testing.assert_array_equal(one.lines[0].get_ydata(), lens.target_rank[:, 2].numpy() + 1)


def test_rank_lines_needs_a_target(tiny, lens):
    with pytest.raises(UsageError, match="no target"):
        plots.rank_lines(logit_lens(tiny, PROMPT, k=1))
    with pytest.raises(UsageError, match="no target token at position 5"):
        plots.rank_lines(lens, position=5)  # the last position has no next token
    with pytest.raises(UsageError, match="position"):
        plots.rank_lines(lens, position=6)


def test_attention_heatmap_is_the_heads_pattern_with_the_future_blank(tiny, trace):
    layer, head = 1, tiny.config.n_head - 1
    pattern = trace[f"blocks.{layer}.attn.hook_pattern"][0, head].numpy()
    ax = plots.attention_heatmap(trace, layer, head).axes[0]
    shown = ax.images[0].get_array()
    T = pattern.shape[0]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), future)
    np.testing.assert_allclose(shown.data[~future], pattern[~future])
    assert texts(ax.texts) == [f"{pattern[q, k]:.2f}" for q, k in zip(*np.tril_indices(T))]
    labels = [repr(t) for t in trace.tokens()]
    assert texts(ax.get_xticklabels()) == labels and texts(ax.get_yticklabels()) == labels
    assert ax.get_title() == f"attention of head {head} in block {layer}"


def test_attention_heatmap_checks_its_arguments(tiny, trace):
    with pytest.raises(UsageError, match="head"):
        plots.attention_heatmap(trace, 0, tiny.config.n_head)
    with pytest.raises(UsageError, match="layer"):
        plots.attention_heatmap(trace, tiny.config.n_layer, 0)
    other = tiny.run_with_cache(PROMPT, "blocks.0.attn.hook_pattern")
    with pytest.raises(UsageError, match="not kept"):
        plots.attention_heatmap(other, 1, 0)


def test_attention_overview_has_every_head_in_forward_order(tiny, trace):
    fig = plots.attention_overview(trace)
    L, H = tiny.config.n_layer, tiny.config.n_head
    assert len(fig.axes) == L * H
    for layer in range(L):
        pattern = trace[f"blocks.{layer}.attn.hook_pattern"][0].numpy()
        for head in range(H):
            shown = fig.axes[layer * H + head].images[0].get_array()
            np.testing.assert_allclose(np.tril(shown.filled(0)), np.tril(pattern[head]))
    assert fig.axes[0].get_ylabel() == "block 0" and fig.axes[H - 1].get_title() == f"head {H - 1}"


def test_attribution_bars_add_up_to_the_logit(tiny):
    parts = direct_logit_attribution(tiny, PROMPT, " and")
    by_label = dict(zip(parts.labels, parts.values.tolist()))

    ax = plots.attribution_bars(parts, top=None).axes[0]
    labels = texts(ax.get_yticklabels())
    widths = [bar.get_width() for bar in ax.patches]
    assert sorted(labels) == sorted(parts.labels)
    assert widths == pytest.approx([by_label[label] for label in labels])
    assert widths == sorted(widths, reverse=True)

    ax = plots.attribution_bars(parts, top=5).axes[0]
    labels = texts(ax.get_yticklabels())
    widths = dict(zip(labels, (bar.get_width() for bar in ax.patches)))
    largest = sorted(parts.labels, key=lambda label: -abs(by_label[label]))[:5]
    others = f"{len(parts.labels) - 5} others"
    assert sorted(labels) == sorted([*largest, others])
    for label in largest:
        assert widths[label] == pytest.approx(by_label[label])
    assert sum(widths.values()) == pytest.approx(parts.logit, abs=1e-4)
    with pytest.raises(UsageError, match="top"):
        plots.attribution_bars(parts, top=0)


def test_save_writes_png_or_svg_and_the_same_bytes_twice(tmp_path, lens):
    fig = plots.logit_lens_grid(lens)
    png = plots.save(fig, tmp_path / "new" / "lens.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    first = png.read_bytes()
    assert plots.save(fig, png).read_bytes() == first
    svg = plots.save(fig, tmp_path / "lens.svg")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "<dc:date>" not in text  # no date: an unchanged figure rewrites the same file
    assert plots.save(fig, svg).read_text() == text
    with pytest.raises(UsageError, match=r"\.png or \.svg"):
        plots.save(fig, tmp_path / "lens.jpg")
