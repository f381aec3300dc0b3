// @ts-check
// "Download as a spreadsheet": the workbook that computes the model on the prompt with formulas
// (gpt2lab.spreadsheet, POST /api/spreadsheet). Its planned size is stated before it is written.

import { api, download } from "./api.js";
import { $, el, showError } from "./dom.js";

/** @typedef {{sheets: number, estimated_bytes: number, summary: string}} WorkbookPlan */

/** The model and prompt of the bar: what the workbook will compute. */
const request = () => ({ model: $("#model").value, prompt: $("#prompt").value });

/**
 * Plans the workbook, says its size, then writes it and hands it to the browser as a file.
 * @param {HTMLButtonElement} button
 * @param {HTMLElement} said where the size is stated
 */
async function downloadWorkbook(button, said) {
  button.disabled = true;
  try {
    const body = request();
    /** @type {WorkbookPlan} */
    const plan = await api("/api/spreadsheet/plan", body);
    const mb = (plan.estimated_bytes / 1e6).toFixed(1);
    said.textContent = `writing ${plan.sheets} sheets, about ${mb} MB…`;
    const blob = await download("/api/spreadsheet", body);
    const url = URL.createObjectURL(blob);
    el("a", { href: url, download: `gpt2lab-${body.model}.xlsx` }).click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    said.textContent = `${plan.sheets} sheets, about ${mb} MB: every step a sheet of formulas`;
  } catch (error) {
    said.textContent = "";
    showError(/** @type {Error} */ (error));
  } finally {
    button.disabled = false;
  }
}

/** Adds the button (and where its size is stated) to the prompt's bar. */
export function addDownload() {
  const said = el("span", { id: "spreadsheet-size", class: "muted" });
  const button = el(
    "button",
    {
      id: "spreadsheet",
      type: "button",
      title: "a workbook that computes the model on this prompt (Excel, LibreOffice)",
    },
    "Download as a spreadsheet",
  );
  button.addEventListener("click", () => downloadWorkbook(button, said));
  $("#prompt-form").append(button, said);
}
