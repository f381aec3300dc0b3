"""Draw the pictures of docs/spreadsheet.md with LibreOffice: the `chars` workbook of "ROMEO:",
sheets of it as LibreOffice prints them after recomputing, before and after a typed token.

    python docs/spreadsheet_pictures.py     # writes docs/images/spreadsheet_*.png

Needs LibreOffice (soffice) and pdftoppm (Debian's poppler-utils): headless LibreOffice prints
the workbook to a PDF of one page per sheet, and pdftoppm turns the pages wanted into PNGs.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import openpyxl
from PIL import Image, ImageChops

import gpt2lab
from gpt2lab import spreadsheet as ss

IMAGES = Path(__file__).resolve().parent / "images"
PDF = 'pdf:calc_pdf_Export:{"SinglePageSheets":{"type":"boolean","value":"true"}}'
EDIT = ("D12", ",")  # the last token, ":", typed over
# (edited?) -> {sheet: picture}
PICTURES = {
    False: {"input": "spreadsheet_input.png", "b0.attn.pattern": "spreadsheet_pattern.png"},
    True: {
        "input": "spreadsheet_input_edited.png",
        "next token": "spreadsheet_next_token_edited.png",
    },
}


def crop(path: Path) -> None:
    """Cut the white margin (a page is as wide as the longest line of a sheet's header)."""
    image = Image.open(path).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box is not None:
        _, _, right, bottom = box
        image.crop((0, 0, min(image.width, right + 12), min(image.height, bottom + 12))).save(path)


def main() -> None:
    model = gpt2lab.load("chars")
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp) / "chars.xlsx"
        ss.write_workbook(model, "ROMEO:", book)
        for edited, pictures in PICTURES.items():
            wb = openpyxl.load_workbook(book)
            if edited:
                wb["input"][EDIT[0]] = EDIT[1]
            staged = Path(tmp) / ("edited.xlsx" if edited else "as_written.xlsx")
            wb.save(staged)
            pdf = ss.recalculate(staged, tmp, to=PDF)  # one page per sheet, in order
            for sheet, name in pictures.items():
                page = str(wb.sheetnames.index(sheet) + 1)
                stem = str((IMAGES / name).with_suffix(""))
                pages = ["-f", page, "-l", page, "-singlefile"]
                subprocess.run(
                    ["pdftoppm", "-png", "-r", "110", *pages, str(pdf), stem], check=True
                )
                crop(IMAGES / name)
                print(f"wrote docs/images/{name}")


if __name__ == "__main__":
    main()
