"""The figures of gpt2lab.viz.plots show the library's own values: each test reads the plotted data
back out of the figure (image arrays, bar lengths, line points, texts) and compares it with a
result the test computes itself."""

from __future__ import annotations

from xml.etree import ElementTree

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from gpt2lab.errors import OutputError, UsageError
from gpt2lab.inspection import inspect_prompt
from gpt2lab.lens import direct_logit_attribution, lens_points, logit_lens
from gpt2lab.viz import PLOT_STYLES, plots

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


def saved_pixels(fig, dpi: int) -> tuple[int, int]:
    """The size of ``fig`` saved with bbox_inches="tight": its tight box plus the padding."""
    box = fig.get_tightbbox()
    pad = 2 * matplotlib.rcParams["savefig.pad_inches"]
    return round((box.width + pad) * dpi), round((box.height + pad) * dpi)


def test_save_writes_200_dpi_png_by_default(tmp_path, lens):
    fig = plots.logit_lens_grid(lens)
    with Image.open(plots.save(fig, tmp_path / "lens.png")) as image:
        assert image.info["dpi"] == pytest.approx((200, 200), abs=0.01)
        size = image.size
    # its pixels are its size in inches (text measures a little differently at each dpi) x 200
    assert size == pytest.approx(saved_pixels(fig, 200), rel=0.01)
    assert size[0] >= 1500  # at 100 dpi it was 839 px wide
    with Image.open(plots.save(fig, tmp_path / "sharper.png", dpi=300)) as image:
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert image.size[0] == pytest.approx(1.5 * size[0], rel=0.01)


def test_save_writes_valid_svg(tmp_path, lens):
    fig = plots.logit_lens_grid(lens)
    root = ElementTree.parse(plots.save(fig, tmp_path / "lens.svg")).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = (float(root.get(key).removesuffix("pt")) for key in ("width", "height"))
    assert (width, height) == pytest.approx(saved_pixels(fig, 72), rel=0.01)  # 72 pt an inch
    assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 10  # drawn, not empty


def draw_all(trace, lens, ins, parts) -> dict:
    """One of each figure, in the current style."""
    return {
        "next": plots.next_token_bars(ins),
        "lens": plots.logit_lens_grid(lens),
        "rank": plots.rank_lines(lens),
        "attention": plots.attention_heatmap(trace, 1, 0),
        "overview": plots.attention_overview(trace),
        "attribution": plots.attribution_bars(parts, top=5),
    }


def font_sizes(fig) -> dict[str, float]:
    """The sizes of a figure's first axes' title, tick labels, cell texts and legend texts."""
    ax = fig.axes[0]
    legend = ax.get_legend()
    sizes = {
        "title": ax.title.get_fontsize(),
        "x ticks": ax.get_xticklabels()[0].get_fontsize() if ax.get_xticklabels() else 0.0,
        "y ticks": ax.get_yticklabels()[0].get_fontsize() if ax.get_yticklabels() else 0.0,
        "texts": max((text.get_fontsize() for text in ax.texts), default=0.0),
        "legend": legend.get_texts()[0].get_fontsize() if legend else 0.0,
        "y label": ax.yaxis.label.get_fontsize(),
    }
    return sizes


def test_slides_style_is_wider_with_bigger_fonts_and_thicker_lines(tiny, trace, lens):
    ins = inspect_prompt(tiny, PROMPT)
    parts = direct_logit_attribution(tiny, PROMPT, " and")
    default = draw_all(trace, lens, ins, parts)
    with plots.style("slides"):
        slides = draw_all(trace, lens, ins, parts)
    assert matplotlib.rcParams["font.size"] == 10  # the style ends with its block

    # the default look is matplotlib's, with the sizes chosen for each figure
    assert font_sizes(default["lens"])["texts"] == 8 and font_sizes(default["next"])["title"] == 12
    assert tuple(default["rank"].get_size_inches()) == (7, 4.5)
    for name in default:
        small, big = font_sizes(default[name]), font_sizes(slides[name])
        for part, size in small.items():
            if size:
                assert big[part] == pytest.approx(1.6 * size), (name, part)
        width, height = default[name].get_size_inches()
        slide_width, slide_height = slides[name].get_size_inches()
        assert slide_height == pytest.approx(1.3 * height)
        assert slide_width >= 1.3 * width - 1e-9
    for name in ("next", "rank", "attribution"):  # charts are at least as wide as a 16:9 slide
        width, height = slides[name].get_size_inches()
        assert width / height >= 16 / 9 - 1e-9
    line, slide_line = default["rank"].axes[0].lines[0], slides["rank"].axes[0].lines[0]
    assert slide_line.get_linewidth() == 2 * line.get_linewidth() == 3


def test_style_names_and_errors():
    assert tuple(plots.STYLES) == PLOT_STYLES  # what the CLI offers
    with pytest.raises(UsageError, match="must be one of default, slides"), plots.style("poster"):
        pass


def test_save_inspection_writes_every_figure(tiny, tmp_path):
    ins = inspect_prompt(tiny, PROMPT, target="next", all_heads=True)
    paths = plots.save_inspection(ins, tmp_path / "pictures", suffix=".svg")
    names = ["next_tokens", "logit_lens", "rank_lines", "attention", "attention_overview"]
    assert paths == [tmp_path / "pictures" / f"{name}.svg" for name in names]
    assert all(path.read_text().lstrip().startswith("<?xml") for path in paths)
    plain = inspect_prompt(tiny, PROMPT)
    assert list(plots.inspection_figures(plain)) == ["next_tokens", "logit_lens"]  # no target...

    with pytest.raises(OutputError, match=r"no such folder .*missing"):
        plots.save_inspection(plain, tmp_path / "missing" / "pictures")
    assert not (tmp_path / "missing").exists()
