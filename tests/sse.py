"""The one Server-Sent Events reader of the web tests (the API's and the server's under load)."""

from __future__ import annotations

import json


def events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a Server-Sent Events body."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out
