// tunewire dashboard: pages (studies; a study's overview, parameters, Pareto front, trials,
// workers), the live loop, and the self-contained report (the same views, no server).
"use strict";
const app = { study: null, table: null, timer: null, route: null, drawnAt: 0, selected: {}, poll: 1 };
window.tw = app;  // what tests and curious users can read: app.study, app.ready

TW.setReady = function (ready) {
  if (ready && !app.ready) performance.mark("tw-ready");
  app.ready = ready;
  document.body.dataset.ready = ready ? "1" : "0";
};

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  if (!nav) return;
  nav.replaceChildren(...parts.flatMap((p, i) => [i ? TW.el("span", { class: "sep", text: "/" }) : null,
    p.href ? TW.el("a", { href: p.href, text: p.text }) : TW.el("span", { text: p.text })]).filter(Boolean));
}

function live(text, on) {
  const el = document.getElementById("live");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("on", !!on);
}

function failed(error) {
  const message = error && error.message ? error.message : String(error);
  if (error && error.kind === "missing") {
    TW.banner.show("Study not found: " + message);
  } else if (error && error.kind === "dashboard") {
    TW.banner.show("The dashboard does not answer: " + message + ". Retrying…");
  } else {
    TW.banner.show("The tunewire server cannot be reached: " + message + ". Showing what was last read; retrying…");
  }
  live("reconnecting…", false);
}

function schedule(fn, seconds) {
  clearTimeout(app.timer);
  app.timer = setTimeout(fn, seconds * 1000);
}

// -- studies ---------------------------------------------------------------------------------
async function studiesPage(token) {
  crumbs({ text: "studies" });
  document.body.dataset.page = "studies";
  const main = document.getElementById("main");
  try {
    const data = await TW.api("api/studies");
    if (token !== app.route) return;
    TW.banner.clear();
    app.poll = data.poll_seconds || 1;
    const intro = TW.el("p", { class: "note", text: data.studies.length + " studies on the server. Click one for its plots, trials and workers." });
    main.replaceChildren(TW.el("h1", { text: "Studies" }), intro,
      data.studies.length ? TW.tables.studies(data.studies) : TW.el("p", { class: "muted", text: "No studies yet: create one with `tunewire study create`." }));
    live("live · " + new Date().toLocaleTimeString(), true);
    TW.setReady(true);
  } catch (e) {
    if (token !== app.route) return;
    failed(e);
  }
  schedule(() => token === app.route && studiesPage(token), Math.max(2, 2 * app.poll));
}

// -- a study -----------------------------------------------------------------------------------
const TABS = [["overview", "Overview"], ["parameters", "Parameters"], ["parallel", "Parallel coordinates"],
              ["pareto", "Pareto front"], ["trials", "Trials"], ["workers", "Workers"]];

function header(study, tab, report) {
  const s = study.summary, c = s.counts, m = study.primary;
  const best = study.results().reduce((b, t) => {
    const v = t.values[m.name];
    return b === null || (m.goal === "maximize" ? v > b.v : v < b.v) ? { v, id: t.id } : b;
  }, null);
  const es = study.spec.early_stopping;
  const stat = (value, label, id) => TW.el("div", { class: "stat", id: id }, TW.el("b", { text: value }), TW.el("span", { text: label }));
  const stats = TW.el("div", { class: "stats", id: "study-stats" },
    stat(String(s.trials), "trials"), stat(String(c.completed), "completed"), stat(String(c.stopped_early), "stopped early"),
    stat(String(c.active), "active"), stat(String(c.requested), "queued"), stat(String(c.failed + c.infeasible), "failed / infeasible"),
    stat(String(c.lost), "lost"), stat(best ? TW.fmt(best.v) + " (#" + best.id + ")" : "—", "best " + m.name, "best-value"),
    stat(s.updated ? TW.ago(s.updated) : "—", "last activity"));
  const title = TW.el("h1", {}, s.name, " ", TW.stateBadge(s.state));
  const about = TW.el("p", { class: "note", text: "algorithm " + s.algorithm + " · metrics " +
    study.metrics.map(TW.metricTitle).join(", ") + " · early stopping " + es.rule +
    (s.max_trials ? " · budget " + s.max_trials + " trials" : "") + " · lease " + study.spec.lease_seconds + " s" });
  const parts = [title, about, stats];
  if (!report) {
    const name = encodeURIComponent(s.name);
    parts.push(TW.el("nav", { class: "tabs" }, TABS.filter(([k]) => k !== "pareto" || study.metrics.length > 1).map(([k, label]) =>
      TW.el("a", { href: "#/study/" + name + (k === "overview" ? "" : "/" + k), class: k === tab ? "active" : "", "data-tab": k, text: label }))));
  }
  return TW.el("div", { id: "study-header" }, parts);
}

function card(title, note, plotId, extra) {
  return TW.el("section", { class: "card" + (extra && extra.wide ? " wide" : ""), id: plotId + "-card" },
    TW.el("h2", { text: title }), note ? TW.el("p", { class: "note", text: note }) : null,
    extra && extra.controls ? extra.controls : null,
    plotId ? TW.el("div", { class: "plot" + (extra && extra.tall ? " tall" : ""), id: plotId }) : null,
    extra && extra.body ? extra.body : null);
}

function selector(id, options, selected, onchange) {
  return TW.el("label", { class: "controls" }, id.replace(/-/g, " ") + " ", TW.el("select", { id: id, onchange: (e) => onchange(e.target.value) },
    options.map((o) => { const el = TW.el("option", { value: o, text: o }); el.selected = o === selected; return el; })));
}

// The views of one tab as [elements, draw()] — draw() (re)draws its plots from app.study.
const VIEWS = {
  overview(study) {
    const metric = app.selected.metric || study.primary.name;
    const metricPick = study.metrics.length > 1 ? selector("curve-metric", study.metrics.map((m) => m.name), metric,
      (v) => { app.selected.metric = v; TW.plots.curves(document.getElementById("curves"), app.study, v); }) : null;
    const rule = study.spec.early_stopping.rule;
    const els = [TW.el("div", { class: "grid" },
      card("Best so far", "Each finished trial's " + study.primary.name + " and the best value up to it.", "history"),
      card("Learning curves", "Every trial's reports by step. ✕: where the server stopped a trial (hover for the rule and reason)" +
        (rule === "successive_halving" ? "; dashed lines: ASHA's rungs" : "") +
        ". Past " + TW.MAX_CURVE_POINTS.toLocaleString() + " points a finished trial's curve shows every n-th report.", "curves", { controls: metricPick }))];
    return [els, () => TW.plotly().then(() => Promise.all([TW.plots.history(document.getElementById("history"), app.study),
      TW.plots.curves(document.getElementById("curves"), app.study, app.selected.metric || app.study.primary.name)]))];
  },
  parameters(study) {
    const names = study.parameters.map((p) => p.name);
    const pick = selector("slice-parameter", names, app.selected.param || TW.paramOrder(study)[0].name,
      (v) => { app.selected.param = v; TW.plots.slice(document.getElementById("slice"), app.study, v); });
    const imp = study.importance;
    const note = "fANOVA-style: a random forest (scikit-learn, 32 trees) learns " + study.primary.name +
      " from the parameters of the finished trials; each bar is the share of the variance of its prediction, over the whole search space, that the parameter explains on its own. " +
      (imp ? "From " + imp.trials + " trials." : "Needs at least 4 finished trials with different results; computed in the background.");
    const els = [TW.el("div", { class: "grid" },
      card("Parameter importance", note, "importance"),
      card("Slice", "The objective against one parameter; colour: trial number.", "slice", { controls: pick }))];
    return [els, () => TW.plotly().then(() => Promise.all([TW.plots.importance(document.getElementById("importance"), app.study),
      TW.plots.slice(document.getElementById("slice"), app.study, app.selected.param)]))];
  },
  // A tab of its own: plotly's parallel coordinates draw on three WebGL canvases, whose
  // start-up would hold back the importance and slice plots.
  parallel(study) {
    const names = study.parameters.map((p) => p.name);
    const els = [card("Parallel coordinates", "Finished trials across the " + Math.min(10, names.length) + " most important parameters (all of them when 10 or fewer) and the objective" +
        (study.results().length > TW.MAX_PARALLEL_LINES ? " (the best " + TW.MAX_PARALLEL_LINES / 2 + " and " + TW.MAX_PARALLEL_LINES / 2 + " others, of " + study.results().length + ")" : "") +
        "; an inactive conditional parameter sits below its axis's range. Drag along an axis to filter.", "parallel", { wide: true, tall: true })];
    return [els, () => TW.plotly().then(() => TW.plots.parallel(document.getElementById("parallel"), app.study))];
  },
  pareto(study) {
    if (study.metrics.length < 2) return [[TW.el("p", { class: "muted", text: "One metric: no Pareto front." })], () => Promise.resolve()];
    const els = [card("Pareto front", "Finished trials by the study's metrics; red: the trials no other beats on every metric.", "pareto", { wide: true, tall: true })];
    return [els, () => TW.plotly().then(() => TW.plots.pareto(document.getElementById("pareto"), app.study))];
  },
  trials(study) {
    app.table = app.table && app.table.study.summary.name === study.summary.name ? app.table : new TW.TrialTable(study);
    app.table.study = study;
    return [[app.table.render()], () => { app.table.study = app.study; app.table.render(); return Promise.resolve(); }];
  },
  workers(study) {
    const holder = TW.el("div", { id: "workers-body" });
    const els = [card("Workers", "Who holds which trial, when each was last heard from (a report or heartbeat renews the lease), and how long its lease has left.", null, { wide: true, body: holder }),
      TW.el("div", { class: "grid", style: "margin-top:14px" },
        card("Lost and retried trials", "A trial whose lease ran out is lost; its configuration is offered again (up to the study's max_trial_retries).", null, { wide: true, body: TW.el("div", { id: "lost-body" }) }),
        card("Timeline", "Trials by worker over time (the latest 1,000).", "timeline", { wide: true }))];
    return [els, () => {
      document.getElementById("workers-body").replaceChildren(TW.tables.workers(app.study));
      document.getElementById("lost-body").replaceChildren(TW.tables.lost(app.study));
      return TW.plotly().then(() => TW.plots.timeline(document.getElementById("timeline"), app.study));
    }];
  },
};

function showStudy(tab) {
  const main = document.getElementById("main");
  const [els, draw] = VIEWS[tab](app.study);
  main.replaceChildren(header(app.study, tab, false), ...els);
  app.draw = draw;
  return redraw(true);
}

async function redraw(force) {
  const heavy = app.study.trials.size > 2000;
  // Large studies redraw their plots at most every 3 s; tables and counts every poll.
  if (!force && heavy && performance.now() - app.drawnAt < 3000 && app.route.tab !== "trials" && app.route.tab !== "workers") {
    document.getElementById("study-header").replaceWith(header(app.study, app.route.tab, false));
    return;
  }
  app.drawnAt = performance.now();
  document.getElementById("study-header").replaceWith(header(app.study, app.route.tab, false));
  await app.draw();
  TW.setReady(true);
}

async function studyPage(token, name, tab) {
  crumbs({ text: "studies", href: "#/" }, { text: name, href: "#/study/" + encodeURIComponent(name) },
         { text: (TABS.find(([k]) => k === tab) || [tab, tab])[1] });
  document.body.dataset.page = "study-" + tab;
  try {
    if (!app.study || app.study.summary.name !== name) {
      app.study = null;
      app.selected = {};
      if (tab !== "trials") TW.plotly().catch(() => null);  // evaluated while the data comes
      const payload = await TW.api("api/studies/" + encodeURIComponent(name));
      performance.mark("tw-data");
      if (token !== app.route) return;
      app.study = new TW.Study(payload);
      app.poll = payload.poll_seconds || 1;
    }
    TW.banner.clear();
    await showStudy(tab);
    live("live · " + new Date().toLocaleTimeString(), true);
  } catch (e) {
    if (token !== app.route) return;
    failed(e);
    schedule(() => token === app.route && studyPage(token, name, tab), Math.max(2, app.poll));
    return;
  }
  follow(token, name);
}

// The live loop: changes since the version held, applied and redrawn.
function follow(token, name) {
  schedule(async () => {
    if (token !== app.route) return;
    try {
      const changes = await TW.api("api/studies/" + encodeURIComponent(name) + "/changes?since=" + app.study.version);
      if (token !== app.route) return;
      if (changes.epoch !== app.study.epoch) {
        app.study = new TW.Study(await TW.api("api/studies/" + encodeURIComponent(name)));
        await showStudy(app.route.tab);
      } else if (app.study.apply(changes) || changes.importance !== undefined || changes.pareto !== undefined) {
        await redraw(false);
      } else {
        document.getElementById("study-header").replaceWith(header(app.study, app.route.tab, false));
      }
      TW.banner.clear();
      live("live · " + new Date().toLocaleTimeString(), true);
    } catch (e) {
      if (token !== app.route) return;
      failed(e);
    }
    follow(token, name);
  }, app.poll);
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const token = { tab: parts[2] || "overview" };
  app.route = token;
  TW.setReady(false);
  clearTimeout(app.timer);
  if (parts[0] === "study" && parts[1]) {
    studyPage(token, parts[1], VIEWS[token.tab] ? token.tab : "overview");
  } else {
    studiesPage(token);
  }
}

// -- the report: every view of one study on one page, from the data in the file ---------------
function report(payload) {
  TW.now = () => payload.now;  // "5 min ago" means before the report was made
  app.study = new TW.Study(payload);
  app.route = { tab: "report" };
  document.body.dataset.page = "report";
  crumbs({ text: "report" }, { text: payload.study.name });
  live("report of " + new Date(payload.now * 1000).toLocaleString(), false);
  const main = document.getElementById("main");
  const sections = TABS.filter(([k]) => k !== "pareto" || app.study.metrics.length > 1);
  const draws = [];
  main.replaceChildren(header(app.study, null, true));
  for (const [key, label] of sections) {
    const [els, draw] = VIEWS[key](app.study);
    main.appendChild(TW.el("section", { class: "report-section", id: "report-" + key }, TW.el("h2", { text: label }), els));
    draws.push(draw);
  }
  return draws.reduce((p, d) => p.then(d), Promise.resolve()).then(() => TW.setReady(true));
}

window.addEventListener("DOMContentLoaded", () => {
  const embedded = document.getElementById("tw-report");
  if (embedded) {
    report(JSON.parse(embedded.textContent));
    return;
  }
  window.addEventListener("hashchange", route);
  route();
});
