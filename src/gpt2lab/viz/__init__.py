"""Pictures of what the model does: matplotlib figures (``plots``) and self-contained HTML
(``html``, for ``gpt2lab inspect --html`` and Jupyter)."""

# The looks of the figures (gpt2lab.viz.plots.STYLES), named here so that the CLI can offer them
# without importing matplotlib.
PLOT_STYLES = ("default", "slides")

# One colour map for every probability in [0, 1], so a figure and the HTML report read alike.
PROBABILITY_COLOURS = "Blues"


def ink(value: float) -> str:
    """The text colour readable on a ``PROBABILITY_COLOURS`` cell of ``value`` in [0, 1]."""
    return "white" if value > 0.6 else "black"
