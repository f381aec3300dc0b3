"""The web app's workbook download: the plan of a prompt's workbook (/api/spreadsheet/plan)
and the .xlsx file itself (/api/spreadsheet), both gpt2lab.spreadsheet's.

``Workbooks`` does this work for gpt2lab.web.lab's ``Lab``, which holds one and routes to it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

from .. import spreadsheet
from ..errors import UsageError
from ..model import GPT2
from .schemas import SpreadsheetRequest


class Workbooks:
    """Workbooks of the served models, each at most ``max_bytes`` as planned.

    ``model`` names a served model (404 for any other) and ``ids`` tokenizes a prompt within
    the server's limits: both are the ``Lab``'s."""

    def __init__(
        self,
        model: Callable[[str], GPT2],
        ids: Callable[[GPT2, str], list[int]],
        max_bytes: int,
    ) -> None:
        self.model = model
        self.ids = ids
        self.max_bytes = max_bytes

    def plan(self, req: SpreadsheetRequest) -> spreadsheet.WorkbookPlan:
        """The plan of the prompt's workbook, refused (UsageError) past Excel's limits or past
        this server's ``max_bytes``."""
        model = self.model(req.model)
        plan = spreadsheet.plan_workbook(model, self.ids(model, req.prompt))
        plan.check()
        if plan.estimated_bytes > self.max_bytes:
            raise UsageError(
                f"the workbook would be about {plan.estimated_bytes / 1e6:,.1f} MB; this server "
                f"writes at most {self.max_bytes / 1e6:,.1f} MB (a shorter prompt or a "
                "smaller model fits, or gpt2lab spreadsheet on your own machine)"
            )
        return plan

    def plan_json(self, req: SpreadsheetRequest) -> dict:
        plan = self.plan(req)
        return {
            "sheets": len(plan.sheets),
            "numbers": plan.numbers,
            "formulas": plan.formulas,
            "estimated_bytes": plan.estimated_bytes,
            "summary": plan.summary(),
        }

    def write(self, req: SpreadsheetRequest) -> bytes:
        """The .xlsx file's bytes (written to a temporary folder, read back, removed)."""
        self.plan(req)  # refused before any writing
        model = self.model(req.model)
        with tempfile.TemporaryDirectory(prefix="gpt2lab-workbook-") as folder:
            path = f"{folder}/workbook.xlsx"
            spreadsheet.write_workbook(model, self.ids(model, req.prompt), path)
            with open(path, "rb") as f:
                return f.read()
