// tunewire dashboard: shared helpers and the study's data as the pages hold it.
// Every string from a study (names, values, workers, reasons) reaches the page as text
// (textContent) or, inside plots, entity-escaped (TW.plotText): never as markup.
"use strict";
const TW = {};

TW.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

// plotly.js reads a few HTML-like tags in its text; entities show as the characters.
TW.plotText = function (value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
};

TW.fmt = function (value) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value !== "number") return String(value);
  if (!isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3) : String(+value.toPrecision(5));
};

TW.duration = function (seconds) {
  if (!(seconds >= 0)) return "";
  if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
};

// The dashboard's clock minus the browser's, from the last answer: times are the server's.
TW.clockOffset = 0;
TW.now = () => Date.now() / 1000 + TW.clockOffset;
TW.ago = function (t) {
  if (!t) return "";
  const d = TW.now() - t;
  return d < 1 ? "just now" : TW.duration(d) + " ago";
};
TW.time = (t) => (t ? new Date(t * 1000).toLocaleString() : "");

TW.banner = {
  show(text) {
    const b = document.getElementById("banner");
    if (!b) return;
    b.textContent = text;
    b.hidden = false;
  },
  clear() {
    const b = document.getElementById("banner");
    if (b) { b.hidden = true; b.textContent = ""; }
  },
};

// GET a JSON answer of the dashboard. Failures become {kind, message}: "unavailable" (the
// tunewire server is down), "missing", "refused", or "dashboard" (the dashboard is away).
TW.api = async function (path) {
  let response;
  try {
    response = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
  } catch (e) {
    throw { kind: "dashboard", message: "cannot reach the dashboard itself (" + e.message + ")" };
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw { kind: (body && body.kind) || "http", message: (body && body.error) || ("HTTP " + response.status) };
  }
  if (body && body.now) TW.clockOffset = body.now - Date.now() / 1000;
  return body;
};

// plotly.js is loaded only when a page draws a plot: lists and tables show at once.
TW.plotly = function () {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!TW._plotly) {
    TW._plotly = new Promise((resolve, reject) => {
      const script = TW.el("script", { src: "static/plotly.min.js" });
      script.addEventListener("load", () => { performance.mark("tw-plotly"); resolve(window.Plotly); });
      script.addEventListener("error", () => { TW._plotly = null; reject({ kind: "dashboard", message: "cannot load plotly.js" }); });
      document.head.appendChild(script);
    });
  }
  return TW._plotly;
};

// Base64 of little-endian numbers to a typed array: the browser's own decoder where it has
// one, else a plain loop over atob's string (Uint8Array.from with a callback is many times
// slower on a large study's curves).
TW.decode = function (b64, Type) {
  let bytes;
  if (typeof Uint8Array.fromBase64 === "function") {
    bytes = Uint8Array.fromBase64(b64);
  } else {
    const text = atob(b64);
    bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  }
  return new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);
};

// One metric's curves from their packed form: Map trial id -> {steps, values}.
TW.unpackCurves = function (packed, into) {
  const ids = TW.decode(packed.ids, Int32Array);
  const offsets = TW.decode(packed.offsets, Int32Array);
  const steps = TW.decode(packed.steps, Float64Array);
  const values = TW.decode(packed.values, Float64Array);
  for (let i = 0; i < ids.length; i++) {
    into.set(ids[i], { steps: steps.subarray(offsets[i], offsets[i + 1]),
                       values: values.subarray(offsets[i], offsets[i + 1]) });
  }
  return into;
};

TW.RESULT_STATES = new Set(["completed", "stopped_early"]);

// A study as the pages hold it: the full payload, then changes applied by version.
TW.Study = class {
  constructor(payload) {
    this.epoch = payload.epoch;
    this.summary = payload.study;
    this.spec = payload.spec;
    this.version = payload.version;
    this.trials = new Map(payload.trials.map((t) => [t.id, t]));
    this.curves = {};
    for (const [metric, packed] of Object.entries(payload.curves)) {
      this.curves[metric] = TW.unpackCurves(packed, new Map());
    }
    this.pareto = payload.pareto || [];
    this.importance = payload.importance || null;
    this.changedAt = TW.now();
  }
  apply(changes) {
    this.summary = changes.study;
    this.version = changes.version;
    for (const t of changes.trials) {
      this.trials.set(t.id, t);
      for (const curves of Object.values(this.curves)) curves.delete(t.id);
    }
    for (const [metric, packed] of Object.entries(changes.curves)) {
      TW.unpackCurves(packed, this.curves[metric] || (this.curves[metric] = new Map()));
    }
    if (changes.pareto) this.pareto = changes.pareto;
    if ("importance" in changes) this.importance = changes.importance;
    if (changes.trials.length) this.changedAt = TW.now();
    return changes.trials.length;
  }
  get metrics() { return this.spec.metrics; }
  get primary() { return this.spec.metrics[0]; }
  get parameters() { return this.spec.parameters; }
  sortedTrials() { return Array.from(this.trials.values()).sort((a, b) => a.id - b.id); }
  results() {
    const names = this.metrics.map((m) => m.name);
    return this.sortedTrials().filter((t) => TW.RESULT_STATES.has(t.state) && t.values &&
      names.every((n) => n in t.values));
  }
  lastReport(trial, metric) {
    const c = (this.curves[metric || this.primary.name] || new Map()).get(trial.id);
    if (!c || !c.steps.length) return null;
    return { step: c.steps[c.steps.length - 1], value: c.values[c.values.length - 1] };
  }
};
