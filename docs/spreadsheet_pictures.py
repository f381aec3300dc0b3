"""Draw the pictures of docs/spreadsheet.md with LibreOffice: the `chars` workbook of "ROMEO:",
sheets of it as LibreOffice shows them after recomputing, before and after a typed token.

    python docs/spreadsheet_pictures.py        # needs LibreOffice (soffice); writes docs/images/
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import openpyxl

import gpt2lab
from gpt2lab import spreadsheet as ss

IMAGES = Path(__file__).resolve().parent / "images"
# picture name -> (sheet shown, cell changed first or None, its new value)
PICTURES = {
    "spreadsheet_input.png": ("input", None, None),
    "spreadsheet_input_edited.png": ("input", "D12", "!"),
    "spreadsheet_pattern.png": ("b0.attn.pattern", None, None),
    "spreadsheet_next_token_edited.png": ("next token", "D12", "!"),
}


def picture(book: Path, sheet: str, cell: str | None, value: str | None, out: Path) -> None:
    """LibreOffice's rendering of one sheet (the active one) after recomputing."""
    with tempfile.TemporaryDirectory() as tmp:
        wb = openpyxl.load_workbook(book)
        if cell is not None:
            wb["input"][cell] = value
        wb.active = wb.sheetnames.index(sheet)
        for ws in wb.worksheets:
            ws.sheet_view.tabSelected = ws.title == sheet
        staged = Path(tmp) / out.with_suffix(".xlsx").name
        wb.save(staged)
        shutil.copy(ss.recalculate(staged, tmp, to="png"), out)


def main() -> None:
    model = gpt2lab.load("chars")
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp) / "chars.xlsx"
        ss.write_workbook(model, "ROMEO:", book)
        for name, (sheet, cell, value) in PICTURES.items():
            picture(book, sheet, cell, value, IMAGES / name)
            print(f"wrote docs/images/{name}")


if __name__ == "__main__":
    main()
