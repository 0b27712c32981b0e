// tunewire dashboard: tables (studies, trials, workers). Cells are text nodes only.
"use strict";
TW.tables = {};

TW.stateBadge = (state) => TW.el("span", { class: "state " + state, text: TW.STATE_LABELS[state] || state });

TW.tables.studies = function (studies) {
  const head = ["study", "state", "trials", "completed", "stopped early", "active", "failed / infeasible",
                "lost", "best", "last activity", "algorithm"];
  const rows = studies.map((s) => {
    const c = s.counts;
    const best = s.best ? TW.fmt(s.best.value) + " (" + s.best.metric + ", trial " + s.best.trial + ")" : "";
    return TW.el("tr", { "data-study": s.name },
      TW.el("td", {}, TW.el("a", { href: "#/study/" + encodeURIComponent(s.name), text: s.name })),
      TW.el("td", {}, TW.stateBadge(s.state)),
      TW.el("td", { class: "num", text: s.trials }),
      TW.el("td", { class: "num", text: c.completed }),
      TW.el("td", { class: "num", text: c.stopped_early }),
      TW.el("td", { class: "num", text: c.active }),
      TW.el("td", { class: "num", text: c.failed + c.infeasible }),
      TW.el("td", { class: "num", text: c.lost }),
      TW.el("td", { class: "num", text: best }),
      TW.el("td", { text: s.updated ? TW.ago(s.updated) : "no trials yet", title: TW.time(s.updated) }),
      TW.el("td", { text: s.algorithm }));
  });
  return TW.el("div", { class: "table-wrap" }, TW.el("table", { id: "studies-table" },
    TW.el("thead", {}, TW.el("tr", {}, head.map((h) => TW.el("th", { text: h })))),
    TW.el("tbody", {}, rows)));
};

// A filter typed under a column: "<0.5", ">=3", "1..5", "=adam" or text to look for.
TW.matches = function (filter, value) {
  filter = filter.trim();
  if (!filter) return true;
  if (value === null || value === undefined || value === "") return false;
  const num = typeof value === "number" ? value : Number(value);
  let m;
  if ((m = filter.match(/^(<=|>=|<|>|=)\s*(-?[\d.eE+-]+)$/)) && isFinite(num)) {
    const x = Number(m[2]);
    return { "<": num < x, "<=": num <= x, ">": num > x, ">=": num >= x, "=": num === x }[m[1]];
  }
  if ((m = filter.match(/^(-?[\d.eE+-]+)\s*\.\.\s*(-?[\d.eE+-]+)$/)) && isFinite(num)) {
    return num >= Number(m[1]) && num <= Number(m[2]);
  }
  if (filter.startsWith("=")) return String(value) === filter.slice(1);
  return String(value).toLowerCase().includes(filter.toLowerCase());
};

// The trial table: every parameter and metric, state, worker, duration, stop rule and
// reason; sorted by a click on a header, filtered under it, 50 rows a page.
TW.TrialTable = class {
  constructor(study) {
    this.study = study;
    this.sort = { key: "id", desc: false };
    this.filters = {};
    this.state = "";
    this.page = 0;
    this.perPage = 50;
    this.root = TW.el("div", { id: "trial-table" });
  }
  columns() {
    const s = this.study;
    const cols = [
      { key: "id", title: "trial", get: (t) => t.id },
      { key: "state", title: "state", get: (t) => t.state, cell: (t) => TW.stateBadge(t.state) },
    ];
    for (const m of s.metrics) {
      cols.push({ key: "m:" + m.name, title: TW.metricTitle(m), get: (t) => (t.values ? t.values[m.name] : null) });
    }
    cols.push({ key: "last", title: "last report", get: (t) => { const r = s.lastReport(t); return r ? r.value : null; },
                text: (t) => { const r = s.lastReport(t); return r ? TW.fmt(r.value) + " @ " + r.step : ""; } });
    for (const p of s.parameters) cols.push({ key: "p:" + p.name, title: p.name, get: (t) => t.params[p.name] ?? null });
    cols.push(
      { key: "worker", title: "worker", get: (t) => t.worker },
      { key: "duration", title: "duration", get: (t) => (t.started ? (t.ended || TW.now()) - t.started : null),
        text: (t) => (t.started ? TW.duration((t.ended || TW.now()) - t.started) : "") },
      { key: "stop", title: "stop rule", get: (t) => (t.stop ? t.stop.rule + " @ " + t.stop.step : "") },
      { key: "reason", title: "reason", get: (t) => (t.stop ? t.stop.reason : t.reason) },
      { key: "source", title: "source", get: (t) => (t.retry_of ? "retry of " + t.retry_of : t.source) });
    return cols;
  }
  rows(cols) {
    let rows = Array.from(this.study.trials.values());
    if (this.state) rows = rows.filter((t) => t.state === this.state);
    for (const col of cols) {
      const f = this.filters[col.key];
      if (f) rows = rows.filter((t) => TW.matches(f, col.get(t)));
    }
    const col = cols.find((c) => c.key === this.sort.key) || cols[0];
    const dir = this.sort.desc ? -1 : 1;
    rows.sort((a, b) => {
      const x = col.get(a), y = col.get(b);
      if (x === y) return a.id - b.id;
      if (x === null || x === undefined || x === "") return 1;
      if (y === null || y === undefined || y === "") return -1;
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
    });
    return rows;
  }
  render() {
    const cols = this.columns();
    const rows = this.rows(cols);
    const pages = Math.max(1, Math.ceil(rows.length / this.perPage));
    this.page = Math.min(this.page, pages - 1);
    const shown = rows.slice(this.page * this.perPage, (this.page + 1) * this.perPage);
    const states = ["", "requested", "active", "completed", "stopped_early", "infeasible", "failed", "lost"];
    const controls = TW.el("div", { class: "controls" },
      TW.el("label", {}, "state ", TW.el("select", { id: "state-filter", onchange: (e) => { this.state = e.target.value; this.page = 0; this.render(); } },
        states.map((s) => { const o = TW.el("option", { value: s, text: s ? TW.STATE_LABELS[s] : "all" }); o.selected = s === this.state; return o; }))),
      TW.el("span", { class: "muted", text: "Filter under a column: text, =value, <0.5, >=3, 1..5. Click a header to sort." }));
    const head = TW.el("tr", {}, cols.map((c) => TW.el("th", {
      class: c.key === this.sort.key ? (this.sort.desc ? "sorted-desc" : "sorted-asc") : "", "data-key": c.key, text: c.title,
      onclick: () => { this.sort = { key: c.key, desc: this.sort.key === c.key ? !this.sort.desc : false }; this.render(); } })));
    const filters = TW.el("tr", { class: "filters" }, cols.map((c) => TW.el("th", {},
      c.key === "state" ? null : TW.el("input", { "data-key": c.key, value: this.filters[c.key] || "", placeholder: "filter",
        onchange: (e) => { this.filters[c.key] = e.target.value; this.page = 0; this.render(); } }))));
    const body = TW.el("tbody", {}, shown.map((t) => TW.el("tr", { "data-trial": t.id }, cols.map((c) => {
      if (c.cell) return TW.el("td", {}, c.cell(t));
      const v = c.text ? c.text(t) : c.get(t);
      return TW.el("td", { class: (typeof v === "number" ? "num " : "") + "col-" + c.key, text: TW.fmt(v) });
    }))));
    const pager = TW.el("div", { class: "pager" },
      TW.el("button", { disabled: this.page === 0, onclick: () => { this.page--; this.render(); }, text: "‹ previous" }),
      TW.el("span", { id: "trial-count", text: rows.length ? `trials ${this.page * this.perPage + 1}–${this.page * this.perPage + shown.length} of ${rows.length}` +
        (rows.length < this.study.trials.size ? ` (filtered from ${this.study.trials.size})` : "") : "no trials match" }),
      TW.el("button", { disabled: this.page >= pages - 1, onclick: () => { this.page++; this.render(); }, text: "next ›" }));
    const wrap = TW.el("div", { class: "table-wrap" }, TW.el("table", {}, TW.el("thead", {}, head, filters), body));
    this.root.replaceChildren(controls, wrap, pager);
    return this.root;
  }
};

// Who holds which trial, when each worker was last heard from, how long its lease lasts.
TW.tables.workers = function (study) {
  const lease = study.spec.lease_seconds;
  const workers = new Map();
  for (const t of study.sortedTrials()) {
    if (!t.worker) continue;
    const w = workers.get(t.worker) || { name: t.worker, holding: [], heard: 0, lease: 0, counts: {}, last: 0 };
    w.counts[t.state] = (w.counts[t.state] || 0) + 1;
    w.last = t.id;
    if (t.state === "active") {
      w.holding.push(t.id);
      w.heard = Math.max(w.heard, t.lease - lease);
      w.lease = Math.max(w.lease, t.lease);
    }
    w.heard = Math.max(w.heard, t.ended || 0, t.started || 0);
    workers.set(t.worker, w);
  }
  const now = TW.now();
  const list = Array.from(workers.values()).sort((a, b) => (b.holding.length - a.holding.length) || (b.heard - a.heard));
  const head = ["worker", "holding", "last report or heartbeat", "lease left", "trials", "completed",
                "stopped early", "failed / infeasible", "lost", "last trial"];
  const rows = list.map((w) => TW.el("tr", { "data-worker": w.name },
    TW.el("td", { text: w.name }),
    TW.el("td", { text: w.holding.map((i) => "#" + i).join(", ") || "—" }),
    TW.el("td", { text: TW.ago(w.heard), title: TW.time(w.heard) }),
    TW.el("td", { class: "num", text: w.lease ? (w.lease > now ? TW.duration(w.lease - now) : "expired") : "" }),
    TW.el("td", { class: "num", text: Object.values(w.counts).reduce((a, b) => a + b, 0) }),
    TW.el("td", { class: "num", text: w.counts.completed || 0 }),
    TW.el("td", { class: "num", text: w.counts.stopped_early || 0 }),
    TW.el("td", { class: "num", text: (w.counts.failed || 0) + (w.counts.infeasible || 0) }),
    TW.el("td", { class: "num", text: w.counts.lost || 0 }),
    TW.el("td", { class: "num", text: "#" + w.last })));
  return TW.el("div", { class: "table-wrap" }, TW.el("table", { id: "workers-table" },
    TW.el("thead", {}, TW.el("tr", {}, head.map((h) => TW.el("th", { text: h })))), TW.el("tbody", {}, rows)));
};

TW.tables.lost = function (study) {
  const retries = new Map();
  for (const t of study.trials.values()) if (t.retry_of) retries.set(t.retry_of, t);
  const lost = study.sortedTrials().filter((t) => t.state === "lost").reverse();
  const head = ["lost trial", "worker", "lost", "reason", "retried as"];
  const rows = lost.map((t) => {
    const again = retries.get(t.id);
    return TW.el("tr", { "data-trial": t.id },
      TW.el("td", { class: "num", text: "#" + t.id }), TW.el("td", { text: t.worker }),
      TW.el("td", { text: TW.ago(t.ended), title: TW.time(t.ended) }), TW.el("td", { text: t.reason }),
      TW.el("td", {}, again ? ["#" + again.id + " ", TW.stateBadge(again.state)] : "not retried (retries used up)"));
  });
  return TW.el("div", { class: "table-wrap" }, TW.el("table", { id: "lost-table" },
    TW.el("thead", {}, TW.el("tr", {}, head.map((h) => TW.el("th", { text: h })))),
    TW.el("tbody", {}, rows.length ? rows : [TW.el("tr", {}, TW.el("td", { colspan: 5, class: "muted", text: "no trial was lost" }))])));
};
