// @ts-check
// Talking to the server: fetch, any failure turned into a sentence for the page, and the one
// reader of server-sent events (generation).

import { EMPTY_PROMPT, setStatus, state } from "./state.js";

/** @typedef {import("./types.js").GenerateEvent} GenerateEvent */

/**
 * The server's messages name request fields ("prompt: String should have at least 1
 * character"); the page says the same thing in words.
 * @type {[RegExp, (match: RegExpExecArray) => string][]}
 */
const FRIENDLY = [
  [/^prompt: String should have at least 1 character$/, () => EMPTY_PROMPT],
  [
    /^prompt: String should have at most (\d+) characters$/,
    (m) => `The prompt is too long: this server takes at most ${m[1]} characters.`,
  ],
  [
    /^([\w.]+): (.*)$/,
    (m) =>
      `The ${m[1].replaceAll("_", " ")} is not accepted: ` +
      `${m[2].charAt(0).toLowerCase()}${m[2].slice(1)}.`,
  ],
];

/**
 * A message as a sentence: a capital first, a full stop last.
 * @param {string} text
 */
export const sentence = (text) =>
  `${text.charAt(0).toUpperCase()}${text.slice(1)}${/[.!?)]$/.test(text) ? "" : "."}`;

/**
 * An error answer as a sentence for the page: never a bare status code.
 * @param {number} status
 * @param {unknown} detail
 */
function friendly(status, detail) {
  if (typeof detail !== "string" || detail === "") {
    return (
      `The server could not answer (HTTP ${status}); ` +
      "the terminal running gpt2lab serve may say why."
    );
  }
  const problems = detail.split("; ").map((problem) => {
    for (const [pattern, say] of FRIENDLY) {
      const match = status === 422 ? pattern.exec(problem) : null;
      if (match) return say(match);
    }
    return sentence(problem);
  });
  return problems.join(" ");
}

/**
 * fetch, with any failure (no server, an error status, a body that is not JSON) turned into
 * an Error whose message is a friendly sentence.
 * @param {string} path
 * @param {RequestInit} init
 */
async function fetchOrExplain(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new Error("The gpt2lab server cannot be reached: is gpt2lab serve still running?");
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new Error(friendly(response.status, data?.detail));
  }
  return response;
}

/**
 * A JSON POST request.
 * @param {object} body
 * @returns {RequestInit}
 */
const post = (body) => ({
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(body),
});

/**
 * Asks the server (GET without a body, else POST), with the status showing "computing…".
 * @param {string} path
 * @param {object} [body]
 * @returns {Promise<any>} the answer (see types.js for each path's)
 */
export async function api(path, body) {
  state.busy++;
  setStatus();
  try {
    const response = await fetchOrExplain(path, body === undefined ? {} : post(body));
    return await response.json();
  } finally {
    state.busy--;
    setStatus();
  }
}

/**
 * POSTs a request whose answer is server-sent events, and yields each event as it comes; an
 * "error" event is thrown as an Error.
 * @param {string} path
 * @param {object} body
 * @returns {AsyncGenerator<GenerateEvent>}
 */
export async function* events(path, body) {
  state.busy++;
  setStatus();
  try {
    const response = await fetchOrExplain(path, post(body));
    const reader = /** @type {ReadableStream<Uint8Array>} */ (response.body)
      .pipeThrough(new TextDecoderStream())
      .getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /** @type {RegExpExecArray} */ (/^event: (.*)$/m.exec(block))[1];
        const data = JSON.parse(/** @type {RegExpExecArray} */ (/^data: (.*)$/m.exec(block))[1]);
        if (event === "error") throw new Error(sentence(data.detail));
        yield { event, data };
      }
    }
  } finally {
    state.busy--;
    setStatus();
  }
}

/**
 * A POST request whose answer is a file, with the status showing "computing…".
 * @param {string} path
 * @param {object} body
 * @returns {Promise<Blob>}
 */
export async function download(path, body) {
  state.busy++;
  setStatus();
  try {
    return await (await fetchOrExplain(path, post(body))).blob();
  } finally {
    state.busy--;
    setStatus();
  }
}
