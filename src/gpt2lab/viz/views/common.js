// @ts-check
// What every view shares: SVG elements, colour scales, the caption that hover writes to, tokens
// laid out as text, and the buttons that save a view as SVG or PNG. Each view is a plain
// function (data, container) -> controller; gpt2lab.viz.views inlines these files into
// self-contained HTML, and the web app imports them as ES modules.

export const SVG = "http://www.w3.org/2000/svg";
export const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
export const MONO = "ui-monospace, Menlo, Consolas, monospace";
// One colour per head (bertviz's idea): 12 distinct hues, repeated past 12 heads.
export const HEAD_COLOURS = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a",
];

/**
 * An SVG element with attributes, appended to ``parent`` if given.
 * @param {string} tag
 * @param {Record<string, string | number>} [attrs]
 * @param {Element | null} [parent]
 * @returns {SVGElement}
 */
export function svgEl(tag, attrs = {}, parent = null) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG, tag));
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

/**
 * An SVG <text> element.
 * @param {Element} parent
 * @param {number} x
 * @param {number} y
 * @param {string} text
 * @param {Record<string, string | number>} [attrs]
 */
export function svgText(parent, x, y, text, attrs = {}) {
  const node = svgEl("text", { x, y, ...attrs }, parent);
  node.textContent = text;
  return node;
}

/**
 * An HTML element with attributes and text.
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {string} [text]
 * @param {Element | null} [parent]
 * @returns {HTMLElement}
 */
export function htmlEl(tag, attrs = {}, text = "", parent = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

// Attention weights below this are not drawn (they would be invisible): a long prompt has
// T² / 2 of them per head, nearly all close to 0.
export const MIN_WEIGHT = 0.01;

/** A token as the views write it: quoted, so that spaces and newlines show. @param {string} t */
export const quote = (t) => JSON.stringify(t);

/** A number with 3 significant decimals. @param {number} v */
export const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3));

/** @param {number} a @param {number} b @param {number} t */
const mix = (a, b, t) => Math.round(a + (b - a) * t);

/**
 * A colour between stops [[r, g, b], ...] at t in [0, 1].
 * @param {number[][]} stops
 * @param {number} t
 */
function ramp(stops, t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const [a, b] = [stops[i], stops[i + 1]];
  const f = x - i;
  return `rgb(${mix(a[0], b[0], f)},${mix(a[1], b[1], f)},${mix(a[2], b[2], f)})`;
}

// matplotlib's "Blues", the colour map of the report's tables and the figures.
const BLUES = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
const REDS = [[255, 255, 255], [252, 187, 161], [251, 106, 74], [203, 24, 29], [103, 0, 13]];
const WHITE_TO_BLUE = [[255, 255, 255], ...BLUES.slice(1)];

/** A value in [0, 1] as a colour of Blues. @param {number} t */
export const blues = (t) => ramp(BLUES, t);

/** A value in [-1, 1]: red below 0, blue above, white at 0. @param {number} t */
export const diverging = (t) => (t < 0 ? ramp(REDS, -t) : ramp(WHITE_TO_BLUE, t));

/** The text colour readable on a colour of strength |t| in [0, 1]. @param {number} t */
export const ink = (t) => (Math.abs(t) > 0.6 ? "white" : "black");

/**
 * The width of a text in the view's font, measured in the page.
 * @param {SVGSVGElement} root
 * @param {string} text
 * @param {number} size
 * @param {string} [family]
 */
export function textWidth(root, text, size, family = MONO) {
  const probe = /** @type {SVGTextElement} */ (
    svgEl("text", {
      "font-size": size, "font-family": family, x: -9999, y: -9999, style: "white-space:pre",
    }, root)
  );
  probe.textContent = text;
  const width = probe.getComputedTextLength();
  probe.remove();
  return width || text.length * size * 0.6;
}

/**
 * A view's frame: a title, the SVG (all that is saved), a caption that hover writes to, and
 * buttons that save the SVG as a file. The container's placeholder text is replaced.
 * @param {HTMLElement} container
 * @param {string} title
 * @param {string} kind the view's name, on the root as data-view
 */
export function frame(container, title, kind) {
  container.textContent = "";
  const wrap = htmlEl("div", { class: "gpt2lab-view", "data-view": kind }, "", container);
  wrap.style.cssText = `font-family:${FONT};font-size:13px;color:#1b1b1b;margin:4px 0`;
  const controls = htmlEl("div", { class: "controls" }, "", wrap);
  controls.style.cssText = "display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin:2px 0";
  const scroller = htmlEl("div", {}, "", wrap);
  scroller.style.cssText = "overflow-x:auto;max-width:100%";
  const root = /** @type {SVGSVGElement} */ (
    svgEl("svg", { xmlns: SVG, "font-family": FONT, "font-size": 13, role: "img" }, scroller)
  );
  svgEl("title", {}, root).textContent = title;
  const caption = htmlEl("div", { class: "caption" }, "\u00a0", wrap);
  caption.style.cssText = `font-family:${MONO};font-size:12px;min-height:1.4em;color:#333`;
  const save = htmlEl("span", {}, "", controls);
  save.style.cssText = "margin-left:auto;order:99;font-size:11px";
  for (const [label, kindOf] of [["SVG", "svg"], ["PNG", "png"]]) {
    const button = htmlEl("button", { type: "button", class: `save-${kindOf}` }, label, save);
    button.title = `save this view as ${label}`;
    button.addEventListener("click", () => download(root, kind, kindOf));
  }
  return { wrap, controls, root, caption };
}

/**
 * Size the SVG to its content's bounding box plus a margin.
 * @param {SVGSVGElement} root
 * @param {number} width
 * @param {number} height
 */
export function size(root, width, height) {
  root.setAttribute("width", String(Math.ceil(width)));
  root.setAttribute("height", String(Math.ceil(height)));
  root.setAttribute("viewBox", `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`);
}

// A PNG is drawn at this many pixels per CSS pixel: 3.125 x 96 = 300 dots per inch.
const PNG_SCALE = 3.125;

/**
 * Save the SVG as a file, in the browser (a notebook or the web app).
 * @param {SVGSVGElement} root
 * @param {string} name
 * @param {string} kind "svg" or "png"
 */
function download(root, name, kind) {
  const text = new XMLSerializer().serializeToString(root);
  const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
  const link = (/** @type {string} */ href) => {
    const a = htmlEl("a", { href, download: `${name}.${kind}` });
    a.click();
  };
  if (kind === "svg") {
    link(url);
    return;
  }
  const image = new Image();
  image.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = Math.ceil(root.width.baseVal.value * PNG_SCALE);
    canvas.height = Math.ceil(root.height.baseVal.value * PNG_SCALE);
    const context = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    context.fillStyle = "white";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    link(canvas.toDataURL("image/png"));
  };
  image.src = url;
}

/**
 * Lay tokens out as wrapped text, each on a coloured box; returns the boxes and the height.
 * @param {SVGSVGElement} root
 * @param {Element} parent
 * @param {string[]} tokens
 * @param {(i: number) => string} fill the background of token i
 * @param {(i: number) => string} color the text colour of token i
 * @param {{x: number, y: number, width: number, fontSize?: number}} box
 */
export function flowTokens(root, parent, tokens, fill, color, box) {
  const fontSize = box.fontSize ?? 15;
  const lineHeight = fontSize * 1.9;
  let [x, y] = [box.x, box.y];
  /** @type {SVGGElement[]} */
  const cells = [];
  tokens.forEach((token, i) => {
    // A newline token shows as ⏎ and ends the line; other tokens show their spaces as they are.
    const shown = token.replace(/\n/g, "⏎");
    const width = textWidth(root, shown, fontSize) + 4;
    if (x + width > box.x + box.width && x > box.x) [x, y] = [box.x, y + lineHeight];
    const g = /** @type {SVGGElement} */ (svgEl("g", { class: "token", "data-i": i }, parent));
    svgEl("rect", {
      x, y, width, height: fontSize * 1.5, rx: 2, fill: fill(i), stroke: "none",
    }, g);
    svgText(g, x + 2, y + fontSize * 1.1, shown, {
      "font-family": MONO, "font-size": fontSize, fill: color(i), style: "white-space:pre",
    });
    cells.push(g);
    x += width + 1;
    if (token.endsWith("\n")) [x, y] = [box.x, y + lineHeight];
  });
  return { cells, height: y + lineHeight - box.y };
}

/**
 * A horizontal colour bar from ``low`` to ``high`` with its end values.
 * @param {Element} parent
 * @param {number} x
 * @param {number} y
 * @param {(t: number) => string} colour of t in [0, 1]
 * @param {string} low
 * @param {string} high
 */
export function colourBar(parent, x, y, colour, low, high) {
  const g = svgEl("g", { class: "legend" }, parent);
  for (let i = 0; i < 40; i++) {
    svgEl("rect", { x: x + i * 4, y, width: 4.5, height: 10, fill: colour(i / 39) }, g);
  }
  svgText(g, x - 4, y + 9, low, { "text-anchor": "end", "font-size": 11 });
  svgText(g, x + 164, y + 9, high, { "font-size": 11 });
  return g;
}
