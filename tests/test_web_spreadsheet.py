"""The web app's workbook download (POST /api/spreadsheet, /api/spreadsheet/plan and the page's
"Download as a spreadsheet" button): the file is gpt2lab.spreadsheet's workbook for the prompt,
and a workbook past the server's size cap is refused with its planned size."""

from __future__ import annotations

import io
from collections.abc import Iterator

import openpyxl
import pytest
from fastapi.testclient import TestClient
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, serving

import gpt2lab
from gpt2lab import spreadsheet
from gpt2lab.web.app import create_app

PROMPT = "ROMEO:"


@pytest.fixture(scope="module")
def chars():
    return gpt2lab.load("chars")


@pytest.fixture(scope="module")
def client(chars) -> TestClient:
    return TestClient(create_app({"chars": chars}))


def test_the_plan_is_the_librarys(client, chars):
    response = client.post("/api/spreadsheet/plan", json={"model": "chars", "prompt": PROMPT})
    assert response.status_code == 200, response.text
    plan = spreadsheet.plan_workbook(chars, PROMPT)
    assert response.json() == {
        "sheets": len(plan.sheets),
        "numbers": plan.numbers,
        "formulas": plan.formulas,
        "estimated_bytes": plan.estimated_bytes,
        "summary": plan.summary(),
    }


def test_the_download_is_the_workbook_of_the_prompt(client, chars):
    response = client.post("/api/spreadsheet", json={"model": "chars", "prompt": PROMPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response.headers["content-disposition"] == 'attachment; filename="gpt2lab-chars.xlsx"'
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    plan = spreadsheet.plan_workbook(chars, PROMPT)
    assert book.sheetnames == [name for name, _rows, _cols in plan.sheets]
    assert book.sheetnames[30:33] == ["embed", "pos_embed", "b0.resid_pre"]
    # the prompt's characters, one per row, and the formulas that compute from them
    inputs = book["input"]
    assert [inputs.cell(7 + i, 4).value for i in range(len(PROMPT))] == list(PROMPT)
    assert str(book["probs"]["C7"].value).startswith("=")
    assert str(book["b0.ln1.mean"]["C7"].value).startswith("=AVERAGE(")


def test_a_workbook_past_the_cap_is_refused_with_its_size(chars):
    client = TestClient(create_app({"chars": chars}, max_workbook_bytes=1000))
    size = spreadsheet.plan_workbook(chars, PROMPT).estimated_bytes / 1e6
    for path in ("/api/spreadsheet", "/api/spreadsheet/plan"):
        response = client.post(path, json={"model": "chars", "prompt": PROMPT})
        assert response.status_code == 400
        assert response.json()["detail"] == (
            f"the workbook would be about {size:,.1f} MB; this server writes at most 0.0 MB "
            "(a shorter prompt or a smaller model fits, or gpt2lab spreadsheet on your own "
            "machine)"
        )


def test_an_unknown_model_is_a_404(client):
    response = client.post("/api/spreadsheet", json={"model": "nope", "prompt": PROMPT})
    assert response.status_code == 404


@pytest.fixture(scope="module")
def server(chars) -> Iterator[str]:
    yield from serving(create_app({"chars": chars}))


@pytest.mark.slow  # writes the workbook again, in a browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_the_button_states_the_size_then_downloads_the_workbook(server, chars, tmp_path):
    from playwright.sync_api import sync_playwright

    plan = spreadsheet.plan_workbook(chars, PROMPT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server + "/")
        page.wait_for_selector("#run:not([disabled])")
        page.fill("#prompt", PROMPT)
        with page.expect_download() as info:
            page.click("#spreadsheet")
        download = info.value
        assert download.suggested_filename == "gpt2lab-chars.xlsx"
        path = tmp_path / "book.xlsx"
        download.save_as(path)
        mb = f"{plan.estimated_bytes / 1e6:.1f}"
        said = page.inner_text("#spreadsheet-size")
        browser.close()
    assert said == f"{len(plan.sheets)} sheets, about {mb} MB: every step a sheet of formulas"
    assert openpyxl.load_workbook(path, read_only=True).sheetnames == [s[0] for s in plan.sheets]
    assert errors == []
