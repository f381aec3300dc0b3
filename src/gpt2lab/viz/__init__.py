"""Every rendering of what the model does, side by side: rich tables for a terminal
(``terminal``), self-contained HTML (``html``, for ``gpt2lab inspect --html`` and Jupyter),
matplotlib figures (``plots``) and JSON for the web page (``web_json``). They draw the data of
gpt2lab.inspection, gpt2lab.lens and gpt2lab.trace, and compute nothing of their own."""

# The looks of the figures (gpt2lab.viz.plots.STYLES), named here so that the CLI can offer them
# without importing matplotlib.
PLOT_STYLES = ("default", "slides")

# Channels of a step shown in a table (terminal, HTML); the JSON has them all.
STEP_COLUMNS = 8

# One colour map for every probability in [0, 1], so a figure and the HTML report read alike.
PROBABILITY_COLOURS = "Blues"


def ink(value: float) -> str:
    """The text colour readable on a ``PROBABILITY_COLOURS`` cell of ``value`` in [0, 1]."""
    return "white" if value > 0.6 else "black"
