// tunewire dashboard: the plots (plotly.js). Each takes a div and a TW.Study and draws
// with Plotly.react, so a redraw after a live update reuses the plot.
"use strict";
TW.plots = {};
// What a plot draws at most, so that a study of 10,000 trials draws in a browser's second.
TW.MAX_CURVE_POINTS = 250000;
TW.MAX_PARALLEL_LINES = 2000;
TW.COLORS = { completed: "#2457c5", stopped_early: "#e08a00", active: "#1b9e5a",
              failed: "#b42318", infeasible: "#b42318", lost: "#9a3412", requested: "#9ca3af" };
TW.STATE_LABELS = { completed: "completed", stopped_early: "stopped early", active: "active",
                    failed: "failed", infeasible: "infeasible", lost: "lost", requested: "requested" };

TW.plotConfig = (name) => ({
  responsive: true, displaylogo: false,
  // The camera button of the mode bar downloads the plot as a PNG, drawn in the browser.
  toImageButtonOptions: { format: "png", filename: name, scale: 2 },
});

TW.layout = (extra) => Object.assign({
  margin: { l: 64, r: 20, t: 12, b: 48 }, hovermode: "closest", font: { size: 12 },
  paper_bgcolor: "#fff", plot_bgcolor: "#fff",
  legend: { orientation: "h", y: 1.08, x: 0 },
}, extra || {});

TW.axis = (title, extra) => Object.assign({ title: { text: TW.plotText(title) }, zeroline: false }, extra || {});

TW.draw = function (div, traces, layout, name) {
  div.dataset.traces = String(traces.length);
  return Plotly.react(div, traces, layout, TW.plotConfig(name));
};

TW.metricTitle = (m) => m.name + " (" + (m.goal === "maximize" ? "max" : "min") + ")";

// Best value so far of the primary metric, trial by trial.
TW.plots.history = function (div, study) {
  const m = study.primary;
  const results = study.results();
  const big = results.length > 2000;
  const traces = [];
  for (const state of ["completed", "stopped_early"]) {
    const rows = results.filter((t) => t.state === state);
    if (!rows.length) continue;
    traces.push({
      type: big ? "scattergl" : "scatter", mode: "markers", name: TW.STATE_LABELS[state],
      x: rows.map((t) => t.id), y: rows.map((t) => t.values[m.name]),
      marker: { color: TW.COLORS[state], size: 5, opacity: 0.6 },
      hovertemplate: "trial %{x}<br>" + TW.plotText(m.name) + " %{y}<extra></extra>",
    });
  }
  const better = m.goal === "maximize" ? (a, b) => a > b : (a, b) => a < b;
  const xs = [], ys = [];
  let best = null;
  for (const t of results) {
    const v = t.values[m.name];
    if (best === null || better(v, best)) best = v;
    xs.push(t.id); ys.push(best);
  }
  traces.push({ type: big ? "scattergl" : "scatter", mode: "lines", name: "best so far", x: xs, y: ys,
                line: { color: "#111827", width: 2, shape: "hv" }, hoverinfo: "skip" });
  return TW.draw(div, traces, TW.layout({ xaxis: TW.axis("trial"), yaxis: TW.axis(TW.metricTitle(m)) }),
                 study.summary.name + "-history");
};

TW.valueAt = function (curve, step) {
  let found = null;
  for (let i = 0; i < curve.steps.length && curve.steps[i] <= step; i++) found = curve.values[i];
  return found;
};

TW.ashaRungs = function (study, maxStep) {
  const es = study.spec.early_stopping;
  if (es.rule !== "successive_halving") return [];
  const s = es.settings;
  const r0 = s.min_resource || 1, eta = s.reduction_factor || 3, last = s.max_resource || 0;
  const rungs = [];
  for (let r = r0; r <= maxStep && (!last || r < last) && rungs.length < 60; r *= eta) rungs.push(r);
  return rungs;
};

// Every trial's reports of one metric: one line per trial, grouped by state (one WebGL
// trace per group, lines cut by gaps), the server's stop decisions, and ASHA's rungs.
TW.plots.curves = function (div, study, metricName) {
  const metric = study.metrics.find((m) => m.name === metricName) || study.primary;
  const curves = study.curves[metric.name] || new Map();
  const groups = { completed: [], stopped_early: [], active: [], other: [] };
  let maxStep = 0;
  for (const [id, c] of curves) {
    const t = study.trials.get(id);
    if (!t || !c.steps.length) continue;
    (groups[t.state] || groups.other).push([id, c]);
    maxStep = Math.max(maxStep, c.steps[c.steps.length - 1]);
  }
  // Past TW.MAX_CURVE_POINTS, every trial is drawn with every n-th report (and its last).
  let total = 0;
  for (const list of Object.values(groups)) for (const [, c] of list) total += c.steps.length;
  const every = Math.max(1, Math.ceil(total / TW.MAX_CURVE_POINTS));
  const traces = [];
  for (const [state, list] of Object.entries(groups)) {
    if (!list.length) continue;
    const stride = state === "active" ? 1 : every;
    let n = 0;
    for (const [, c] of list) n += Math.ceil(c.steps.length / stride) + 2;
    const x = new Float64Array(n), y = new Float64Array(n), ids = new Float64Array(n);
    let k = 0;
    for (const [id, c] of list) {
      const last = c.steps.length - 1;
      for (let i = 0; i <= last; i++) {
        if (i % stride && i !== last) continue;
        x[k] = c.steps[i]; y[k] = c.values[i]; ids[k] = id; k++;
      }
      x[k] = NaN; y[k] = NaN; ids[k] = NaN; k++;
    }
    traces.push({
      type: "scattergl", mode: state === "active" ? "lines+markers" : "lines",
      name: state === "other" ? "failed, infeasible, lost" : TW.STATE_LABELS[state],
      x: x.subarray(0, k), y: y.subarray(0, k), customdata: ids.subarray(0, k), connectgaps: false,
      line: { color: TW.COLORS[state] || TW.COLORS.failed, width: state === "active" ? 2 : 1 },
      marker: { size: 4 }, opacity: state === "active" ? 1 : 0.45,
      hovertemplate: "trial %{customdata}<br>step %{x}<br>" + TW.plotText(metric.name) + " %{y}<extra></extra>",
    });
  }
  const stopped = [];
  for (const t of study.trials.values()) {
    const c = curves.get(t.id);
    if (!t.stop || !c) continue;
    const v = TW.valueAt(c, t.stop.step);
    if (v !== null) stopped.push([t, v]);
  }
  if (stopped.length) {
    traces.push({
      type: stopped.length > 200 ? "scattergl" : "scatter", mode: "markers", name: "stopped here",
      x: stopped.map(([t]) => t.stop.step), y: stopped.map(([, v]) => v),
      marker: { symbol: "x", size: 8, color: "#b42318" },
      hovertext: stopped.map(([t]) => TW.plotText("trial " + t.id + " stopped at step " + t.stop.step +
        " by " + t.stop.rule + ": " + t.stop.reason)),
      hoverinfo: "text",
    });
  }
  const rungs = TW.ashaRungs(study, maxStep);
  const layout = TW.layout({
    xaxis: TW.axis("step"), yaxis: TW.axis(TW.metricTitle(metric)),
    margin: { l: 64, r: 20, t: 40, b: 48 }, legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 0 },
    shapes: rungs.map((r) => ({ type: "line", xref: "x", yref: "paper", x0: r, x1: r, y0: 0, y1: 1,
                                line: { color: "#7c3aed", width: 1, dash: "dash" } })),
    annotations: rungs.map((r, i) => ({ x: r, y: 1, xref: "x", yref: "paper", yanchor: "top", xanchor: "left",
                                        text: "rung " + i, showarrow: false, font: { color: "#7c3aed", size: 10 } })),
  });
  div.dataset.every = String(every);
  div.dataset.rungs = String(rungs.length);
  div.dataset.stops = String(stopped.length);
  return TW.draw(div, traces, layout, study.summary.name + "-learning-curves");
};

// Parameters in plot order: by importance when known, else as the spec lists them.
TW.paramOrder = function (study) {
  const byName = new Map(study.parameters.map((p) => [p.name, p]));
  const names = study.importance ? study.importance.parameters : study.parameters.map((p) => p.name);
  return names.map((n) => byName.get(n)).filter(Boolean);
};

TW.dimension = function (p, trials) {
  const label = TW.plotText(p.name);
  if (p.kind === "categorical") {
    const codes = new Map(p.choices.map((c, i) => [String(c), i]));
    const vals = trials.map((t) => (p.name in t.params && t.params[p.name] !== null ? codes.get(String(t.params[p.name])) ?? -1 : -1));
    // Tick labels of parcoords are drawn as plain text (its axis labels are not).
    const ticks = p.choices.map((c, i) => i), text = p.choices.map((c) => String(c));
    if (vals.includes(-1)) { ticks.unshift(-1); text.unshift("inactive"); }
    return { label, values: vals, tickvals: ticks, ticktext: text };
  }
  const log = p.log && p.low > 0;
  const f = (v) => (log ? Math.log10(v) : v);
  let low = f(p.low), high = f(p.high);
  const inactive = low - 0.08 * (high - low || 1);
  const vals = trials.map((t) => (p.name in t.params && t.params[p.name] !== null ? f(Number(t.params[p.name])) : inactive));
  const dim = { label: label + (log ? " (log10)" : ""), values: vals };
  if (vals.includes(inactive)) { low = inactive; }
  dim.range = [low, high];
  return dim;
};

// At most TW.MAX_PARALLEL_LINES: the best half, and the others evenly spread by trial id.
TW.someResults = function (study) {
  const results = study.results(), max = TW.MAX_PARALLEL_LINES;
  if (results.length <= max) return results;
  const m = study.primary, sign = m.goal === "maximize" ? -1 : 1;
  const ranked = results.slice().sort((a, b) => sign * (a.values[m.name] - b.values[m.name]));
  const best = ranked.slice(0, max / 2), rest = ranked.slice(max / 2).sort((a, b) => a.id - b.id);
  const step = rest.length / (max / 2);
  return best.concat(Array.from({ length: max / 2 }, (_, i) => rest[Math.floor(i * step)]));
};

TW.plots.parallel = function (div, study, maxParams) {
  const results = TW.someResults(study);
  const m = study.primary;
  const params = TW.paramOrder(study).slice(0, maxParams || 10);
  const dims = params.map((p) => TW.dimension(p, results));
  const objective = results.map((t) => t.values[m.name]);
  dims.push({ label: TW.plotText(TW.metricTitle(m)), values: objective });
  const trace = { type: "parcoords", dimensions: dims,
    line: { color: objective, colorscale: "Viridis", reversescale: m.goal !== "maximize", showscale: true,
            colorbar: { title: { text: TW.plotText(m.name) } } } };
  div.dataset.lines = String(results.length);
  return TW.draw(div, results.length ? [trace] : [], TW.layout({ margin: { l: 70, r: 70, t: 40, b: 30 } }),
                 study.summary.name + "-parallel-coordinates");
};

TW.plots.importance = function (div, study) {
  const imp = study.importance;
  const names = imp ? imp.parameters.slice().reverse() : [];
  const values = imp ? imp.importance.slice().reverse() : [];
  const trace = { type: "bar", orientation: "h", x: values, y: names.map(TW.plotText),
                  marker: { color: "#2457c5" }, hovertemplate: "%{y}: %{x:.3f}<extra></extra>" };
  const height = Math.max(260, 26 * names.length + 70);
  div.style.height = height + "px";
  return TW.draw(div, imp ? [trace] : [], TW.layout({
    xaxis: TW.axis("share of the variance explained alone", { range: [0, 1] }),
    yaxis: { automargin: true }, margin: { l: 10, r: 20, t: 10, b: 48 } }),
    study.summary.name + "-importance");
};

TW.plots.slice = function (div, study, paramName) {
  const p = study.parameters.find((q) => q.name === paramName) || TW.paramOrder(study)[0];
  const m = study.primary;
  const rows = study.results().filter((t) => p && p.name in t.params && t.params[p.name] !== null);
  const x = rows.map((t) => (p.kind === "categorical" ? TW.plotText(t.params[p.name]) : t.params[p.name]));
  const trace = { type: rows.length > 2000 ? "scattergl" : "scatter", mode: "markers", x: x,
    y: rows.map((t) => t.values[m.name]),
    marker: { color: rows.map((t) => t.id), colorscale: "Blues", showscale: true, size: 6,
              colorbar: { title: { text: "trial" } } },
    customdata: rows.map((t) => t.id),
    hovertemplate: "trial %{customdata}<br>%{x}<br>%{y}<extra></extra>" };
  const xaxis = TW.axis(p ? p.name : "", p && p.log ? { type: "log" } : p && p.kind === "categorical" ? { type: "category" } : {});
  div.dataset.points = String(rows.length);
  return TW.draw(div, [trace], TW.layout({ xaxis: xaxis, yaxis: TW.axis(TW.metricTitle(m)) }),
                 study.summary.name + "-slice");
};

TW.plots.pareto = function (div, study) {
  const metrics = study.metrics;
  const results = study.results();
  const front = new Set(study.pareto);
  const on = results.filter((t) => front.has(t.id)), off = results.filter((t) => !front.has(t.id));
  const hover = (rows) => rows.map((t) => "trial " + t.id);
  let traces, layout;
  if (metrics.length === 2) {
    const [a, b] = metrics;
    const line = on.slice().sort((s, t) => s.values[a.name] - t.values[a.name]);
    traces = [
      { type: "scatter", mode: "markers", name: "dominated", x: off.map((t) => t.values[a.name]),
        y: off.map((t) => t.values[b.name]), text: hover(off), marker: { color: "#9ca3af", size: 6 } },
      { type: "scatter", mode: "lines+markers", name: "Pareto front", x: line.map((t) => t.values[a.name]),
        y: line.map((t) => t.values[b.name]), text: hover(line), line: { shape: "hv", color: "#b42318" },
        marker: { color: "#b42318", size: 8 } },
    ];
    layout = TW.layout({ xaxis: TW.axis(TW.metricTitle(a)), yaxis: TW.axis(TW.metricTitle(b)) });
  } else {
    const dims = metrics.map((m) => ({ label: TW.plotText(m.name), values: results.map((t) => t.values[m.name]) }));
    traces = [{ type: "splom", dimensions: dims, text: hover(results), showupperhalf: false,
                marker: { size: 5, color: results.map((t) => (front.has(t.id) ? "#b42318" : "#9ca3af")) } }];
    layout = TW.layout({ height: 520 });
  }
  div.dataset.front = String(on.length);
  return TW.draw(div, traces, layout, study.summary.name + "-pareto-front");
};

// Which worker ran which trial when: a bar per trial (the latest 1,000 started).
TW.plots.timeline = function (div, study) {
  const started = study.sortedTrials().filter((t) => t.started > 0).slice(-1000);
  const now = TW.now();
  const traces = [];
  for (const state of Object.keys(TW.COLORS)) {
    const rows = started.filter((t) => t.state === state);
    if (!rows.length) continue;
    traces.push({
      type: "bar", orientation: "h", name: TW.STATE_LABELS[state],
      y: rows.map((t) => TW.plotText(t.worker || "(none)")),
      base: rows.map((t) => new Date(t.started * 1000).toISOString()),
      x: rows.map((t) => Math.max(1, ((t.ended || now) - t.started) * 1000)),
      marker: { color: TW.COLORS[state] },
      hovertext: rows.map((t) => "trial " + t.id + " · " + TW.plotText(t.worker)), hoverinfo: "text",
    });
  }
  div.dataset.bars = String(started.length);
  return TW.draw(div, traces, TW.layout({ barmode: "overlay", xaxis: { type: "date" },
    yaxis: { automargin: true, type: "category" }, margin: { l: 10, r: 20, t: 12, b: 40 } }),
    study.summary.name + "-timeline");
};
