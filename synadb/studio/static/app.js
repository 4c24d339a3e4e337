/* synadb studio: one page, no build step and no network beyond this server.
 * Text from the file only ever reaches the page through textContent (the
 * el() helper), never innerHTML. */
"use strict";

// Run colours: a run keeps its colour wherever it is shown, whatever else
// is selected, because the colour comes from a hash of its id.
const PALETTE = ["#2f6fde", "#e4572e", "#29a36a", "#9c4fd6", "#f2a516", "#17a2b8",
                 "#d6336c", "#8c564b", "#1f3b73", "#bcbd22", "#e377c2", "#9b2226",
                 "#ff7f0e", "#00796b", "#5e60ce"];
const POLL_MS = 1000;
const state = { page: null, view: null, stamp: null, allowWrites: false,
                chart: loadSettings() };

function loadSettings() {
  const d = { smoothing: 0, logY: false, x: "step" };
  try { return Object.assign(d, JSON.parse(localStorage.getItem("synadb-studio-chart") || "{}")); }
  catch (e) { return d; }
}
function saveSettings() {
  try { localStorage.setItem("synadb-studio-chart", JSON.stringify(state.chart)); } catch (e) { /* private mode */ }
}

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "style") e.setAttribute("style", v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, params, options) {
  const qs = params ? "?" + new URLSearchParams(params).toString() : "";
  const r = await fetch("/api/" + path + qs, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(path, body) {
  return api(path, null, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Synadb-Studio": "1" } });
}

function fmtNum(v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(4) : v.toPrecision(5).replace(/\.?0+$/, "");
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
function fmtDur(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}
function fmtAgo(t) {
  if (!t) return "";
  const s = Date.now() / 1000 - t;
  if (s < 90) return "just now";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " days ago";
}
// replaceChildren() and append() would show a null child as the text "null".
for (const proto of [Element.prototype, DocumentFragment.prototype]) {
  for (const name of ["replaceChildren", "append"]) {
    const orig = proto[name];
    proto[name] = function (...kids) { return orig.apply(this, kids.filter(k => k !== null && k !== undefined && k !== false)); };
  }
}
function errorBox(e) { return el("div", { class: "error" }, String(e.message || e)); }
function color(i) { return PALETTE[i % PALETTE.length]; }
function runColor(id) {  // FNV-1a of the run id
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) { h ^= id.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return PALETTE[h % PALETTE.length];
}
function swatch(id) { return el("i", { class: "swatch", style: "background:" + runColor(id), "data-color": runColor(id) }); }
function runLink(id, name, cls) {
  return el("a", { class: "link " + (cls || ""), href: "#/runs/" + encodeURIComponent(id) }, name || id);
}
function isSystem(m) { return m.startsWith("system/"); }
function kv(obj, id) {
  const rows = Object.entries(obj || {});
  if (!rows.length) return el("p", { class: "muted" }, "none");
  return el("table", { class: "kv", id }, el("tbody", {}, rows.map(([k, v]) =>
    el("tr", {}, el("td", { class: "k" }, k), el("td", {}, longText(typeof v === "number" ? fmtNum(v) :
      (v !== null && typeof v === "object") ? JSON.stringify(v) : String(v ?? "")))))));
}
/* A long value (a JSON summary, say) folded: its start, and the whole of it
 * (pretty-printed when it is JSON) one click away. */
function longText(text) {
  if (text.length <= 120) return text;
  let full = text;
  try { full = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
  return el("details", { class: "long" }, el("summary", {}, text.slice(0, 100) + "…"), el("pre", {}, full));
}

/* A plain uPlot line chart in `box` (keys page); series = [{label, x, y}]. */
function lineChart(box, series, opts) {
  opts = opts || {};
  const data = align(series.map(s => ({ x: s.x, y: s.y })));
  const cfg = {
    width: Math.max(320, (box.clientWidth || 800) - 4), height: opts.height || 300,
    scales: { x: { time: false } }, legend: { show: true },
    series: [{ label: opts.xLabel || "step" },
             ...series.map((s, i) => ({ label: s.label, stroke: color(i), width: 1.5,
                                        spanGaps: true, points: { show: data[0].length < 60 } }))],
    axes: [{ label: opts.xLabel || "step" }, { label: opts.yLabel || "" }],
  };
  box.textContent = "";
  if (!data[0].length) { box.appendChild(el("div", { class: "muted" }, "no points yet")); return null; }
  return new uPlot(cfg, data, box);
}

/* Curves on the union of their x values (runs log different steps). */
function align(curves) {
  const xs = Array.from(new Set(curves.flatMap(c => c.x))).sort((a, b) => a - b);
  const pos = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const c of curves) {
    const col = new Array(xs.length).fill(null);
    c.x.forEach((x, i) => { const y = c.y[i]; col[pos.get(x)] = typeof y === "number" ? y : null; });
    data.push(col);
  }
  return data;
}

/* Exponential moving average, debiased as TensorBoard and W&B do (the
 * first points are not dragged towards zero). */
function ema(ys, alpha) {
  if (!alpha) return ys;
  let acc = 0, n = 0;
  return ys.map(y => {
    if (typeof y !== "number" || !isFinite(y)) return null;
    acc = acc * alpha + (1 - alpha) * y; n++;
    return acc / (1 - Math.pow(alpha, n));
  });
}

const X_LABELS = { step: "step", wall: "wall time", relative: "relative time (s)" };

/* One curve as the settings want it: x by step, wall time or seconds since
 * the run started; y smoothed and, on a log scale, positive only. */
function prepare(curve, run, settings) {
  let x = curve.step;
  if (settings.x === "wall") x = curve.time;
  else if (settings.x === "relative") {
    const t0 = (run && run.start_time) || (curve.time.length ? curve.time[0] : 0);
    x = curve.time.map(t => Math.round((t - t0) * 1000) / 1000);
  }
  let y = curve.value.map(v => typeof v === "number" ? v : null);
  if (settings.logY) y = y.map(v => v !== null && v > 0 ? v : null);
  return { x, raw: y, smooth: settings.smoothing > 0 ? ema(y, settings.smoothing) : null };
}

const ZOOM_PEERS = new Set();  // the panels on the page, which zoom together
// Charts drawn in a closed section had no width to take: size them on opening.
document.addEventListener("toggle", e => { if (e.target.open) window.dispatchEvent(new Event("resize")); }, true);

/* A panel per metric: a grid of uPlot charts that share the cursor.
 * curves: {metric: {run id: curve}}; runs: [{id, name, start_time}]. */
function panelGrid(box, opts) {
  const charts = new Map();  // metric -> {chart, sig, body, readout}
  function destroy() { for (const c of charts.values()) { ZOOM_PEERS.delete(c); if (c.chart) c.chart.destroy(); } charts.clear(); }
  function render(curves, runs, settings) {
    const metrics = Object.keys(curves).filter(m => !opts.filter || opts.filter(m)).sort();
    const wanted = new Set(metrics);
    for (const [m, c] of charts) if (!wanted.has(m)) { ZOOM_PEERS.delete(c); if (c.chart) c.chart.destroy(); charts.delete(m); }
    const order = [];
    for (const m of metrics) {
      if (!charts.has(m)) {
        const readout = el("div", { class: "readout muted" });
        const body = el("div", { class: "chart-body" });
        const c = { body, readout, chart: null, sig: null };
        const grow = el("button", { class: "secondary small panel-grow", title: "full width", onclick: () => {
          c.panel.classList.toggle("wide");
          if (c.chart) c.chart.setSize(size(c));
        } }, "⤢");
        c.panel = el("div", { class: "metric-panel panel", "data-metric": m },
          el("div", { class: "panel-title" }, el("b", {}, m), readout, grow), body);
        charts.set(m, c);
      }
      order.push(charts.get(m).panel);
    }
    // In the page first, so that each chart takes its panel's width.
    box.replaceChildren(...order);
    if (!order.length) box.append(el("p", { class: "muted" }, opts.empty || "No metrics logged yet."));
    for (const m of metrics) {
      const c = charts.get(m);
      const rs = runs.filter(r => curves[m][r.id]);
      const sig = JSON.stringify([rs.map(r => r.id), settings]);
      const lines = rs.map(r => ({ run: r, ...prepare(curves[m][r.id], r, settings) }));
      const data = align(lines.flatMap(l => l.smooth ? [{ x: l.x, y: l.raw }, { x: l.x, y: l.smooth }]
                                                      : [{ x: l.x, y: l.raw }]));
      c.panel.dataset.points = String(rs.reduce((n, r) => n + curves[m][r.id].step.length, 0));
      c.panel.dataset.runs = rs.map(r => r.id).join(",");
      // What is drawn, for tests and for anyone reading the page's DOM.
      Object.assign(c.panel.dataset, { lines: String(data.length - 1), log: settings.logY ? "1" : "0",
        x: settings.x, xmax: data[0].length ? String(data[0][data[0].length - 1]) : "" });
      // Same runs and settings: the curves grow in place, and a zoom stays.
      if (c.chart && c.sig === sig) { c.chart.setData(data, !c.zoomed); continue; }
      if (c.chart) c.chart.destroy();
      c.sig = sig;
      c.chart = makeChart(c, m, lines, data, settings);
    }
  }
  function makeChart(c, metric, lines, data, settings) {
    c.body.textContent = "";
    if (!data[0].length) { c.body.append(el("p", { class: "muted" }, "no points yet")); return null; }
    const series = [{ label: X_LABELS[settings.x] }];
    for (const l of lines) {
      const col = runColor(l.run.id), few = data[0].length < 40;
      if (l.smooth) series.push({ label: l.run.name + " (raw)", stroke: col + "44", width: 1, spanGaps: true, points: { show: false } });
      series.push({ label: l.run.name, stroke: col, width: 1.6, spanGaps: true, points: { show: few && !l.smooth } });
    }
    const cfg = {
      ...size(c), legend: { show: false }, cursor: { sync: { key: "studio" } },
      scales: { x: { time: settings.x === "wall" }, y: settings.logY ? { distr: 3, log: 10 } : {} },
      series,
      axes: [{ label: X_LABELS[settings.x], size: 40 }, { size: 56 }],
      hooks: {
        // A drag zooms every panel to the same x range (as W&B does); a
        // double click zooms them all out again.
        setSelect: [u => { if (u.select.width > 0) c.dragged = true; }],
        setScale: [(u, key) => {
          if (key !== "x") return;
          c.panel.dataset.xrange = `${u.scales.x.min},${u.scales.x.max}`;
          if (!c.dragged) return;
          c.dragged = false; c.zoomed = true;
          for (const p of ZOOM_PEERS) if (p.chart && p.chart !== u) { p.zoomed = true; p.chart.setScale("x", { min: u.scales.x.min, max: u.scales.x.max }); }
        }],
        ready: [u => u.over.addEventListener("dblclick", () => {
          c.zoomed = false;
          for (const p of ZOOM_PEERS) if (p.chart && p.chart !== u) { p.zoomed = false; p.chart.setData(p.chart.data, true); }
        })],
        setCursor: [u => {
        const i = u.cursor.idx;
        if (i === null || i === undefined) { c.readout.textContent = ""; return; }
        const parts = [];
        for (let s = 1; s < u.series.length; s++) {
          const lab = u.series[s].label;
          if (lab.endsWith(" (raw)")) continue;
          const v = u.data[s][i];
          if (v !== null && v !== undefined) parts.push(`${lab}: ${fmtNum(v)}`);
        }
        const xv = u.data[0][i];
        c.readout.textContent = `${settings.x === "wall" ? fmtTime(xv) : fmtNum(xv)} · ${parts.join(" · ")}`;
      }] },
    };
    c.zoomed = false;
    ZOOM_PEERS.add(c);
    return new uPlot(cfg, data, c.body);
  }
  function size(c) {
    const wide = c.panel.classList.contains("wide");
    return { width: Math.max(280, (c.body.clientWidth || 460) - 2), height: (opts.height || 220) * (wide ? 1.6 : 1) };
  }
  function resize() {
    for (const c of charts.values()) if (c.chart) c.chart.setSize(size(c));
  }
  window.addEventListener("resize", resize);
  return { render, destroy: () => { window.removeEventListener("resize", resize); destroy(); } };
}

/* Panels in sections by the metric's prefix, as W&B groups them:
 * train/loss and train/acc under "train", val/... under "val", the rest
 * (no "/") first under "Charts".  Same interface as panelGrid. */
function sectionedPanels(box, opts) {
  const sections = new Map();  // prefix -> {el, grid}
  const prefix = m => m.includes("/") ? m.slice(0, m.indexOf("/")) : "";
  function render(curves, runs, settings) {
    const metrics = Object.keys(curves).filter(m => !opts.filter || opts.filter(m));
    const wanted = [...new Set(metrics.map(prefix))].sort((a, b) => a === "" ? -1 : b === "" ? 1 : a.localeCompare(b));
    for (const [p, sec] of sections) if (!wanted.includes(p)) { sec.grid.destroy(); sections.delete(p); }
    for (const p of wanted) {
      if (!sections.has(p)) {
        const gridBox = el("div", { class: "panel-grid" });
        const sec = el("details", { class: "section", open: true, "data-section": p || "charts" },
          el("summary", {}, p || "Charts"), gridBox);
        sections.set(p, { el: sec, grid: panelGrid(gridBox, { ...opts, filter: m => prefix(m) === p && (!opts.filter || opts.filter(m)) }) });
      }
    }
    box.replaceChildren(...wanted.map(p => sections.get(p).el));
    if (!wanted.length) box.append(el("p", { class: "muted" }, opts.empty || "No metrics logged yet."));
    for (const p of wanted) sections.get(p).grid.render(curves, runs, settings);
  }
  return { render, destroy: () => { for (const sec of sections.values()) sec.grid.destroy(); sections.clear(); } };
}

/* Smoothing, log y and the x axis; `onchange` redraws. */
function chartControls(onchange) {
  const s = state.chart;
  const out = el("span", { class: "muted", id: "smoothing-value" }, s.smoothing ? s.smoothing.toFixed(2) : "off");
  const slider = el("input", { type: "range", id: "smoothing", min: "0", max: "0.99", step: "0.01", value: String(s.smoothing) });
  slider.addEventListener("input", () => {
    s.smoothing = Number(slider.value); out.textContent = s.smoothing ? s.smoothing.toFixed(2) : "off";
    saveSettings(); onchange();
  });
  const log = el("input", { type: "checkbox", id: "log-y", checked: s.logY });
  log.addEventListener("change", () => { s.logY = log.checked; saveSettings(); onchange(); });
  const xSel = el("select", { id: "x-axis" }, Object.entries({ step: "step", wall: "wall time", relative: "relative time" })
    .map(([v, t]) => el("option", { value: v, selected: v === s.x }, t)));
  xSel.addEventListener("change", () => { s.x = xSel.value; saveSettings(); onchange(); });
  return el("span", { class: "chart-controls" },
    el("label", {}, "smoothing ", slider, " ", out),
    el("label", {}, log, " log y"),
    el("label", {}, "x axis ", xSel));
}

// ------------------------------------------------------------------ router
const pages = {};
const NAV_OF = { runs: "experiments" };
function route() {
  const m = location.hash.match(/^#\/(\w+)(?:\/(.*))?$/);
  const page = (m && pages[m[1]]) ? m[1] : "overview";
  const arg = m && m[2] ? decodeURIComponent(m[2]) : null;
  for (const a of document.querySelectorAll("#nav a"))
    a.classList.toggle("active", a.dataset.page === (NAV_OF[page] || page));
  if (state.view && state.view.destroy) state.view.destroy();
  const main = document.getElementById("main");
  main.textContent = "";
  main.dataset.page = page;
  state.page = page;
  state.view = pages[page](main, arg) || {};
}

async function poll() {
  const badge = document.getElementById("live");
  try {
    const s = await api("stamp");
    badge.classList.remove("stale");
    if (state.stamp !== null && s.end !== state.stamp && state.view && state.view.refresh) {
      state.stamp = s.end;
      await state.view.refresh();
    }
    state.stamp = s.end;
  } catch (e) {
    badge.classList.add("stale");
  }
  setTimeout(poll, POLL_MS);
}

// ------------------------------------------------------------------ overview
pages.overview = function (main) {
  const box = el("div");
  main.append(el("h2", {}, "Overview"), box);
  async function load() {
    let d;
    try { d = await api("overview"); } catch (e) { box.replaceChildren(errorBox(e)); return; }
    const i = d.info;
    const card = (k, v, href) => el(href ? "a" : "div", { class: "card", href }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
    const result = el("div", { id: "verify-result" });
    const recent = d.recent_runs.length ? el("table", { id: "recent-runs" },
      el("thead", {}, el("tr", {}, ["run", "experiment", "status", "started", "duration", "latest metrics"].map(h => el("th", {}, h)))),
      el("tbody", {}, d.recent_runs.map(r => el("tr", { "data-run-id": r.id },
        el("td", {}, swatch(r.id), runLink(r.id, r.name, "run-name")), el("td", {}, r.experiment),
        el("td", {}, el("span", { class: "badge status-" + r.status }, r.status)),
        el("td", { title: fmtTime(r.start_time) }, fmtAgo(r.start_time)),
        el("td", {}, fmtDur((r.end_time || (r.status === "Running" ? Date.now() / 1000 : null)) - r.start_time)),
        el("td", { class: "muted" }, Object.entries(r.metrics).map(([k, v]) => `${k} ${fmtNum(v)}`).join(" · "))))))
      : el("p", { class: "muted" }, "No runs yet: log one with synadb.ExperimentTracker, the MLflow shim or a framework logger.");
    const models = d.recent_models.length ? el("table", { id: "recent-models" },
      el("thead", {}, el("tr", {}, ["model", "versions", "production", "latest from run", "updated"].map(h => el("th", {}, h)))),
      el("tbody", {}, d.recent_models.map(m => el("tr", {},
        el("td", {}, el("a", { class: "link", href: "#/models/" + encodeURIComponent(m.name) }, m.name)),
        el("td", { class: "num" }, m.versions), el("td", {}, m.production ? "v" + m.production : "—"),
        el("td", {}, m.latest_run ? runLink(m.latest_run, m.latest_run_name) : "—"),
        el("td", { title: fmtTime(m.updated) }, fmtAgo(m.updated))))))
      : el("p", { class: "muted" }, "No models in this file.");
    const stores = d.vector_stores.length ? el("table", { id: "vector-stores" },
      el("thead", {}, el("tr", {}, ["store", "vectors", "dimensions", "metric"].map(h => el("th", {}, h)))),
      el("tbody", {}, d.vector_stores.map(s => el("tr", {},
        el("td", {}, el("a", { class: "link", href: "#/vectors" }, s.name)), el("td", { class: "num" }, s.count),
        el("td", { class: "num" }, s.dimensions), el("td", {}, s.metric)))))
      : el("p", { class: "muted" }, "No vector store in this file.");
    const table = (title, obj) => el("div", { class: "grow" }, el("h3", {}, title),
      el("table", {}, el("tbody", {}, Object.entries(obj).sort((a, b) => b[1] - a[1])
        .map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", { class: "num" }, v))))));
    box.replaceChildren(
      el("div", { class: "cards", id: "overview-cards" },
        card("runs", d.runs, "#/experiments"), card("experiments", d.experiments, "#/experiments"),
        card("models", d.models, "#/models"), card("vectors", d.vectors, "#/vectors"),
        card("file size", fmtBytes(i.size_bytes)), card("keys", i.keys, "#/keys")),
      el("div", { class: "panel", id: "overview-runs" }, el("h3", {}, "Recent runs ",
        el("a", { class: "link small", href: "#/experiments" }, "all runs →")), recent),
      el("div", { class: "row" },
        el("div", { class: "panel grow", id: "overview-models" }, el("h3", {}, "Models"), models),
        el("div", { class: "panel grow", id: "overview-vectors" }, el("h3", {}, "Vector stores"), stores)),
      el("details", { class: "panel", id: "file-details" }, el("summary", {}, "File details"),
        el("p", { class: "muted" }, `${i.path} · ${fmtBytes(i.used_bytes)} in use of ${fmtBytes(i.size_bytes)} · format v${i.format_version} · created ${fmtTime(i.created_ms / 1000)} · ${d.allow_writes ? "read-write" : "read-only"}`),
        el("div", { class: "row" }, table("Keys by type", d.by_type), table("Keys by component", d.by_namespace))),
      el("div", { class: "panel" }, el("h3", {}, "Integrity"),
        el("p", { class: "muted" }, "Scan every record of the file for damage (reads only)."),
        el("button", { id: "verify-btn", onclick: async () => {
          result.replaceChildren("checking…");
          try {
            const r = await api("verify");
            result.replaceChildren(el("p", { class: r.ok ? "ok" : "bad" },
              r.ok ? `OK: ${r.records} records, no damage` : "DAMAGED"), el("pre", {}, r.text));
          } catch (e) { result.replaceChildren(errorBox(e)); }
        } }, "Verify file"), result));
  }
  load();
  return { refresh: load };
};

// ------------------------------------------------------------------ keys
pages.keys = function (main, arg) {
  const pattern = el("input", { id: "key-pattern", placeholder: "glob, e.g. sensor/*", value: "*" });
  const type = el("select", { id: "key-type" },
    ["", "float", "int", "text", "bytes", "vector", "null"].map(t => el("option", { value: t }, t || "any type")));
  const list = el("div", { class: "scroll keylist" });
  const count = el("span", { class: "muted" });
  const detail = el("div", { class: "grow", id: "key-detail" });
  let offset = 0, current = arg, chart = null;
  const more = el("button", { class: "secondary", onclick: () => { offset += 200; loadList(); } }, "next page");
  const prev = el("button", { class: "secondary", onclick: () => { offset = Math.max(0, offset - 200); loadList(); } }, "previous");
  main.append(el("h2", {}, "Keys"),
    el("div", { class: "controls" }, pattern, type,
      el("button", { onclick: () => { offset = 0; loadList(); } }, "Search"), prev, more, count),
    el("div", { class: "row" }, list, detail));
  pattern.addEventListener("keydown", e => { if (e.key === "Enter") { offset = 0; loadList(); } });
  type.addEventListener("change", () => { offset = 0; loadList(); });

  async function loadList() {
    let d;
    try { d = await api("keys", { pattern: pattern.value || "*", type: type.value, offset, limit: 200 }); }
    catch (e) { list.replaceChildren(errorBox(e)); return; }
    count.textContent = `${d.total} keys` + (d.total > 200 ? ` (showing ${offset + 1}–${Math.min(d.total, offset + 200)})` : "");
    list.replaceChildren(el("table", { id: "keys-table" }, el("tbody", {}, d.keys.map(k =>
      el("tr", { class: k.key === current ? "selected" : "", onclick: () => { current = k.key; loadList(); loadKey(); } },
        el("td", {}, k.key), el("td", {}, el("span", { class: "badge" }, k.type)))))));
  }
  async function loadKey() {
    if (!current) { detail.replaceChildren(el("p", { class: "muted" }, "Pick a key.")); return; }
    let d;
    try { d = await api("key", { key: current }); } catch (e) { detail.replaceChildren(errorBox(e)); return; }
    const v = d.latest;
    const parts = [el("h3", {}, current, " ", el("span", { class: "badge" }, d.type))];
    if (v.type === "bytes") parts.push(el("p", { class: "muted" }, `${v.size} bytes` + (v.truncated ? " (first 4096 shown)" : "")),
                                      el("pre", { class: "hex", id: "hex-view" }, v.hex.join("\n")));
    else if (v.type === "text") parts.push(el("pre", {}, v.value));
    else if (v.type === "vector") parts.push(el("p", { class: "muted" }, `${v.size} dimensions`));
    else parts.push(el("pre", {}, fmtNum(v.value)));
    const h = d.history;
    parts.push(el("h3", {}, `History (${h.length} values)`));
    const chartBox = el("div", { class: "chart", id: "key-chart" });
    if (h.numeric && h.length > 1) parts.push(chartBox);
    else if (!h.numeric) parts.push(el("div", { class: "scroll" }, el("table", {}, el("tbody", {},
      h.last.map((x, i) => el("tr", {}, el("td", { class: "num" }, h.length - h.last.length + i),
        el("td", {}, x.type === "bytes" ? `<${x.size} bytes> ${x.hex.slice(0, 1).join("")}` :
                      x.type === "vector" ? `[${x.values.slice(0, 8).map(fmtNum).join(", ")}${x.size > 8 ? ", …" : ""}]` :
                      String(x.value))))))));
    if (v.type === "vector") { const vb = el("div", { class: "chart", id: "vector-chart" }); parts.push(el("h3", {}, "Components"), vb);
      detail.replaceChildren(...parts);
      lineChart(vb, [{ label: "value", x: v.values.map((_, i) => i), y: v.values }], { xLabel: "dimension" }); }
    else detail.replaceChildren(...parts);
    if (h.numeric && h.length > 1) chart = lineChart(chartBox, [{ label: current, x: h.x, y: h.y }], { xLabel: "index" });
  }
  loadList(); loadKey();
  return { refresh: async () => { await loadList(); if (current) await loadKey(); },
           destroy: () => chart && chart.destroy() };
};

// ------------------------------------------------------------------ parallel coordinates
/* Numbers when every value is one (params are stored as text), else the
 * values as categories. */
function axisOf(name, values) {
  const nums = values.map(v => (v === null || v === undefined || v === "") ? NaN : Number(v));
  if (nums.every(x => isFinite(x))) {
    const lo = Math.min(...nums), hi = Math.max(...nums);
    const log = lo > 0 && hi / lo >= 100;  // learning rates and the like
    const f = log ? Math.log10 : (x => x);
    return { name, kind: "num", log, lo, hi, pos: nums.map(x => hi === lo ? 0.5 : (f(x) - f(lo)) / (f(hi) - f(lo))), nums };
  }
  const cats = Array.from(new Set(values.map(v => String(v ?? "")))).sort();
  return { name, kind: "cat", cats, pos: values.map(v => cats.length < 2 ? 0.5 : cats.indexOf(String(v ?? "")) / (cats.length - 1)) };
}

/* How strongly a param goes with the metric: Pearson's r for numbers (on
 * log10 for log axes), the correlation ratio (eta, 0..1) for categories. */
function association(axis, ys) {
  const n = ys.length;
  if (n < 3) return null;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  const vy = ys.reduce((a, y) => a + (y - my) ** 2, 0);
  if (!vy) return null;
  if (axis.kind === "num") {
    const xs = axis.nums.map(x => axis.log ? Math.log10(x) : x);
    const mx = xs.reduce((a, b) => a + b, 0) / n;
    const vx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
    if (!vx) return null;
    return xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / Math.sqrt(vx * vy);
  }
  const groups = new Map();
  axis.pos.forEach((p, i) => { if (!groups.has(p)) groups.set(p, []); groups.get(p).push(ys[i]); });
  let between = 0;
  for (const g of groups.values()) { const m = g.reduce((a, b) => a + b, 0) / g.length; between += g.length * (m - my) ** 2; }
  return Math.sqrt(between / vy);
}

function parallelCoords(box, runs, params, metric, selected) {
  const withMetric = runs.filter(r => typeof r.metrics[metric] === "number");
  const varying = params.filter(p => new Set(withMetric.map(r => String(r.params[p] ?? ""))).size > 1).slice(0, 12);
  if (withMetric.length < 2 || !varying.length) {
    box.replaceChildren(el("p", { class: "muted" }, "Parallel coordinates need two or more runs with this metric and a param that differs between them."));
    return;
  }
  const axes = [...varying.map(p => axisOf(p, withMetric.map(r => r.params[p]))),
                axisOf(metric, withMetric.map(r => r.metrics[metric]))];
  const canvas = el("canvas", { id: "parallel-canvas", width: Math.max(600, Math.min(1300, axes.length * 150)), height: 300 });
  canvas.dataset.axes = axes.map(a => a.name).join(",");
  canvas.dataset.lines = String(withMetric.length);
  const ctx = canvas.getContext("2d");
  const padX = 60, top = 36, bottom = 30, h = canvas.height - top - bottom;
  const x = i => padX + i * (canvas.width - 2 * padX) / Math.max(1, axes.length - 1);
  const y = p => top + (1 - p) * h;
  ctx.font = "12px system-ui, sans-serif"; ctx.textAlign = "center";
  axes.forEach((a, i) => {
    ctx.strokeStyle = "#9aa3b2"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x(i), top); ctx.lineTo(x(i), top + h); ctx.stroke();
    ctx.fillStyle = "#1d2330"; ctx.fillText(a.name.length > 22 ? a.name.slice(0, 21) + "…" : a.name, x(i), 16);
    ctx.fillStyle = "#6b7385";
    if (a.kind === "num") {
      ctx.fillText(fmtNum(a.hi), x(i), top - 6); ctx.fillText(fmtNum(a.lo) + (a.log ? " (log)" : ""), x(i), top + h + 16);
    } else a.cats.slice(0, 12).forEach((c, k) => ctx.fillText(c.slice(0, 14), x(i), y(a.cats.length < 2 ? 0.5 : k / (a.cats.length - 1)) - 4));
  });
  const order = withMetric.map((r, i) => i).sort((a, b) => (selected.has(withMetric[a].id) ? 1 : 0) - (selected.has(withMetric[b].id) ? 1 : 0));
  for (const j of order) {
    const r = withMetric[j], sel = selected.has(r.id);
    ctx.strokeStyle = runColor(r.id); ctx.globalAlpha = selected.size && !sel ? 0.25 : 0.85; ctx.lineWidth = sel ? 2.5 : 1.5;
    ctx.beginPath();
    axes.forEach((a, i) => { i ? ctx.lineTo(x(i), y(a.pos[j])) : ctx.moveTo(x(i), y(a.pos[j])); });
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  const ys = withMetric.map(r => r.metrics[metric]);
  const rows = varying.map((p, i) => ({ p, v: association(axes[i], ys), kind: axes[i].kind }))
    .sort((a, b) => Math.abs(b.v ?? 0) - Math.abs(a.v ?? 0));
  const bar = v => el("span", { class: "corr-bar", style: `width:${Math.round(Math.abs(v) * 80)}px;background:${v < 0 ? "#e4572e" : "#2f6fde"}` });
  box.replaceChildren(el("div", { class: "table-scroll parallel-scroll" }, canvas),
    el("div", { class: "importance" }, el("h3", {}, `Params against ${metric}`),
      el("table", { id: "importance-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "param"), el("th", {}, "correlation"), el("th", {}, ""))),
        el("tbody", {}, rows.map(r => el("tr", { "data-param": r.p, "data-value": r.v === null ? "" : r.v.toFixed(4) },
          el("td", {}, r.p), el("td", { class: "num", title: r.kind === "num" ? "Pearson's r" + (axes[varying.indexOf(r.p)].log ? " on log10" : "") : "correlation ratio (eta)" },
            r.v === null ? "—" : r.v.toFixed(2)), el("td", {}, r.v === null ? "" : bar(r.v)))))),
      el("p", { class: "muted small" }, `over ${withMetric.length} runs; last values. Numbers: Pearson's r (log10 for log axes); categories: correlation ratio.`)));
}

// ------------------------------------------------------------------ runs + workspace
function loadHidden() {
  try { const h = JSON.parse(localStorage.getItem("synadb-studio-hidden-cols") || "null"); return h ? new Set(h) : null; }
  catch (e) { return null; }
}

pages.experiments = function (main) {
  const ui = { exp: "", filter: "", sort: { col: "start", dir: -1 }, selected: new Set(),
               runs: [], params: [], metrics: [], hidden: loadHidden(), curves: {}, panelFilter: "" };
  const expSel = el("select", { id: "exp-select" }, el("option", { value: "" }, "all experiments"));
  const filter = el("input", { id: "run-filter", placeholder: "filter: text, or param=value, metric<0.5" });
  const tableBox = el("div", { class: "table-scroll", id: "runs-box" });
  const picker = el("details", { class: "picker", id: "column-picker" });
  const compareBox = el("div", { id: "compare-box" });
  const legend = el("div", { class: "legend", id: "workspace-legend" });
  const grid = el("div", { id: "workspace" });
  const sysGrid = el("div", { class: "panel-grid", id: "system-panels" });
  const sysSection = el("details", { class: "section", id: "system-section", open: true },
    el("summary", {}, "System"), sysGrid);
  const panelFilter = el("input", { id: "panel-filter", placeholder: "filter panels" });
  const pcMetric = el("select", { id: "pc-metric" });
  const pcBox = el("div", { id: "parallel-box" });
  const pcSection = el("details", { class: "section", id: "parallel-section", open: true },
    el("summary", {}, "Parallel coordinates"), el("div", { class: "controls" }, el("span", {}, "metric"), pcMetric,
      el("span", { class: "muted" }, "every run shown in the table; the selected ones stand out")), pcBox);
  pcMetric.addEventListener("change", () => { ui.pcMetric = pcMetric.value; drawParallel(); });
  const charts = sectionedPanels(grid, { filter: m => !isSystem(m) && m.toLowerCase().includes(ui.panelFilter) });
  const sysCharts = panelGrid(sysGrid, { filter: m => isSystem(m) && m.toLowerCase().includes(ui.panelFilter), height: 180 });
  const writes = el("span");
  main.append(el("h2", {}, "Runs"),
    el("div", { class: "controls" }, expSel, filter, picker,
      el("button", { id: "compare-btn", onclick: () => compare() }, "Compare selected"),
      el("button", { class: "secondary", id: "clear-btn", onclick: () => { ui.selected.clear(); renderTable(); loadCharts(); drawParallel(); } }, "Clear selection"),
      writes),
    el("div", { class: "panel runs-panel" }, tableBox),
    compareBox,
    el("div", { class: "controls workspace-controls" }, el("b", {}, "Workspace"),
      chartControls(() => drawCharts()), panelFilter,
      el("span", { class: "muted", id: "workspace-note" })),
    legend, grid, sysSection, pcSection);
  expSel.addEventListener("change", () => { ui.exp = expSel.value; loadRuns(); });
  filter.addEventListener("input", () => { ui.filter = filter.value; renderTable(); loadCharts(); drawParallel(); });
  panelFilter.addEventListener("input", () => { ui.panelFilter = panelFilter.value.trim().toLowerCase(); drawCharts(); });

  function visible() {
    const f = ui.filter.trim().toLowerCase();
    let runs = ui.runs;
    if (f) {
      const eq = f.match(/^([^=<>]+)\s*(=|<|>)\s*(.+)$/);
      runs = runs.filter(r => {
        if (eq) {
          const [, k, op, want] = eq; const key = k.trim();
          const have = key in r.params ? r.params[key] : r.metrics[key];
          if (have === undefined) return false;
          if (op === "=") return String(have).toLowerCase() === want.trim();
          const a = Number(have), b = Number(want);
          return op === "<" ? a < b : a > b;
        }
        return [r.name, r.id, r.status, r.experiment, ...r.tags, ...Object.entries(r.params).map(p => p.join("="))]
          .some(s => String(s).toLowerCase().includes(f));
      });
    }
    const { col, dir } = ui.sort;
    const c = columns().find(c => c.id === col);
    const val = c ? c.sort : (r => r.start_time);
    return runs.slice().sort((a, b) => {
      let x = val(a), y = val(b);
      if (x === undefined || x === null || x === "") return 1; if (y === undefined || y === null || y === "") return -1;
      const nx = Number(x), ny = Number(y);
      if (!isNaN(nx) && !isNaN(ny)) { x = nx; y = ny; }
      return x < y ? -dir : x > y ? dir : 0;
    });
  }
  // Every column the table can show; the picker hides any of them.
  function columns() {
    const dur = r => (r.end_time || (r.status === "Running" ? Date.now() / 1000 : null)) - r.start_time;
    return [
      { id: "status", label: "status", group: "run", sort: r => r.status, cell: r => el("span", { class: "badge status-" + r.status }, r.status) },
      { id: "experiment", label: "experiment", group: "run", sort: r => r.experiment, cell: r => r.experiment },
      { id: "start", label: "started", group: "run", sort: r => r.start_time, cell: r => fmtTime(r.start_time) },
      { id: "duration", label: "duration", group: "run", sort: dur, cell: r => fmtDur(dur(r)), num: true },
      { id: "tags", label: "tags", group: "run", sort: r => r.tags.join(","), cell: r => r.tags.join(", ") },
      ...ui.params.map(p => ({ id: "p:" + p, label: p, group: "params", sort: r => r.params[p], cell: r => r.params[p] ?? "" })),
      ...ui.metrics.map(m => ({ id: "m:" + m, label: m, group: "metrics (last)", sort: r => r.metrics[m], cell: r => fmtNum(r.metrics[m]), num: true })),
    ];
  }
  function hidden() {
    // By default every column shows except the system metrics.
    return ui.hidden || new Set(ui.metrics.filter(isSystem).map(m => "m:" + m));
  }
  function setHidden(h) {
    ui.hidden = h;
    try { localStorage.setItem("synadb-studio-hidden-cols", JSON.stringify([...h])); } catch (e) { /* private mode */ }
    renderTable(); renderPicker();
  }
  function renderPicker() {
    const cols = columns(), h = hidden();
    // Rebuilt when the runs change (once a second in training): keep what was typed.
    const search = el("input", { placeholder: "find a column", class: "picker-search", value: ui.pickerQuery || "" });
    const list = el("div", { class: "picker-list" });
    const fill = () => {
      const q = search.value.toLowerCase();
      const groups = {};
      for (const c of cols) if (c.label.toLowerCase().includes(q)) (groups[c.group] = groups[c.group] || []).push(c);
      list.replaceChildren(...Object.entries(groups).map(([g, cs]) => el("div", {}, el("div", { class: "muted small" }, g),
        cs.map(c => el("label", { class: "picker-item" }, el("input", { type: "checkbox", "data-col": c.id, checked: !h.has(c.id),
          onchange: e => { const n = new Set(hidden()); e.target.checked ? n.delete(c.id) : n.add(c.id); setHidden(n); } }), " ", c.label)))));
    };
    search.addEventListener("input", () => { ui.pickerQuery = search.value; fill(); });
    fill();
    const wasOpen = picker.open, hadFocus = document.activeElement && document.activeElement.classList.contains("picker-search");
    picker.replaceChildren(el("summary", { class: "secondary-btn" }, `Columns (${cols.length - cols.filter(c => h.has(c.id)).length}/${cols.length})`),
      el("div", { class: "picker-pop" },
        el("div", { class: "controls" }, search,
          el("button", { class: "secondary", onclick: () => setHidden(new Set()) }, "all"),
          el("button", { class: "secondary", onclick: () => setHidden(new Set(cols.map(c => c.id))) }, "none")),
        list));
    picker.open = wasOpen;
    if (hadFocus) { search.focus(); search.setSelectionRange(search.value.length, search.value.length); }
  }
  function th(label, col, cls) {
    const sorted = ui.sort.col === col ? (ui.sort.dir > 0 ? " sorted-asc" : " sorted-desc") : "";
    return el("th", { class: "sortable" + sorted + (cls ? " " + cls : ""), "data-col": col, title: label, onclick: () => {
      ui.sort = { col, dir: ui.sort.col === col ? -ui.sort.dir : 1 }; renderTable(); } }, label);
  }
  function renderTable() {
    const runs = visible();
    const h = hidden();
    const cols = columns().filter(c => !h.has(c.id));
    // Two header rows: the group (run, params, metrics) over its columns.
    const spans = [];
    for (const c of cols) {
      if (spans.length && spans[spans.length - 1].group === c.group) spans[spans.length - 1].n++;
      else spans.push({ group: c.group, n: 1 });
    }
    const groups = el("tr", { class: "groups" }, el("th", { class: "sticky-col c0" }, ""), el("th", { class: "sticky-col c1" }, ""),
      ...spans.map(g => el("th", { colspan: String(g.n), class: "group" }, g.group)), state.allowWrites ? el("th", {}, "") : null);
    const all = runs.length > 0 && runs.every(r => ui.selected.has(r.id));
    const selectAll = el("input", { type: "checkbox", id: "select-all", title: "select every run shown", checked: all, onchange: e => {
      for (const r of runs) e.target.checked ? ui.selected.add(r.id) : ui.selected.delete(r.id);
      renderTable(); loadCharts(); drawParallel(); } });
    const head = el("tr", {}, el("th", { class: "sticky-col c0" }, selectAll), th("run", "name", "sticky-col c1"),
      ...cols.map(c => th(c.label, c.id, c.num ? "num" : "")), state.allowWrites ? el("th", {}, "") : null);
    const rows = runs.map(r => el("tr", { "data-run-id": r.id, class: ui.selected.has(r.id) ? "selected" : "" },
      el("td", { class: "sticky-col c0" }, el("input", { type: "checkbox", checked: ui.selected.has(r.id), onchange: e => {
        e.target.checked ? ui.selected.add(r.id) : ui.selected.delete(r.id); renderTable(); loadCharts(); drawParallel(); } })),
      el("td", { class: "sticky-col c1" }, swatch(r.id), runLink(r.id, r.name, "run-name")),
      ...cols.map(c => el("td", { class: c.num ? "num" : "", "data-col": c.id }, c.cell(r))),
      state.allowWrites ? el("td", {}, el("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete run ${r.name}?`)) return;
        try { await post("run/delete", { id: r.id }); ui.selected.delete(r.id); await loadRuns(); } catch (e) { alert(e.message); }
      } }, "delete")) : null));
    const keep = tableBox.scrollLeft;
    const keepTop = tableBox.scrollTop;
    tableBox.replaceChildren(el("table", { id: "runs-table" }, el("thead", {}, groups, head), el("tbody", {}, rows)),
      runs.length ? "" : el("p", { class: "muted" }, "No runs."));
    tableBox.scrollLeft = keep; tableBox.scrollTop = keepTop;
  }
  // Requests overlap (a live poll, a click): only the latest one's answer
  // may be drawn, or a slow stale answer would undo a newer choice.
  let runsSeq = 0, chartsSeq = 0;
  async function loadRuns() {
    const seq = ++runsSeq;
    let d;
    try { d = await api("runs", ui.exp ? { experiment: ui.exp } : null); }
    catch (e) { if (seq === runsSeq) tableBox.replaceChildren(errorBox(e)); return; }
    if (seq !== runsSeq) return;
    ui.runs = d.runs; ui.params = d.params; ui.metrics = d.metrics;
    const ids = new Set(d.runs.map(r => r.id));
    for (const id of [...ui.selected]) if (!ids.has(id)) ui.selected.delete(id);
    renderTable(); renderPicker(); drawParallel();
    await loadCharts();
  }
  function chartRuns() {
    return ui.selected.size ? ui.runs.filter(r => ui.selected.has(r.id)) : visible().slice(0, 10);
  }
  async function loadCharts() {
    const seq = ++chartsSeq;
    const runs = chartRuns();
    document.getElementById("workspace-note").textContent = ui.selected.size ? `${runs.length} selected runs` :
      runs.length ? `the first ${runs.length} runs shown (tick runs to choose)` : "";
    if (!runs.length) { ui.curves = {}; drawCharts(); return; }
    let d;
    try { d = await api("series", { runs: runs.map(r => r.id).join(",") }); }
    catch (e) { if (seq === chartsSeq) grid.replaceChildren(errorBox(e)); return; }
    if (seq !== chartsSeq) return;
    ui.curves = d.series; ui.chartRuns = runs;
    drawCharts();
  }
  function drawCharts() {
    const runs = ui.chartRuns || [];
    legend.replaceChildren(...runs.filter(r => Object.values(ui.curves).some(c => c[r.id]))
      .map(r => el("span", { "data-run-id": r.id }, swatch(r.id), runLink(r.id, r.name))));
    charts.render(ui.curves, runs, state.chart);
    sysCharts.render(ui.curves, runs, state.chart);
    sysSection.style.display = Object.keys(ui.curves).some(isSystem) ? "" : "none";
  }
  function drawParallel() {
    const metrics = ui.metrics.filter(m => !isSystem(m));
    if (!ui.pcMetric || !metrics.includes(ui.pcMetric))
      ui.pcMetric = metrics.find(m => /(^|\/)(val_?)?loss$/.test(m)) || metrics[0] || null;
    pcMetric.replaceChildren(...metrics.map(m => el("option", { value: m, selected: m === ui.pcMetric }, m)));
    pcSection.style.display = ui.pcMetric && ui.params.length && ui.runs.length > 1 ? "" : "none";
    if (ui.pcMetric) parallelCoords(pcBox, visible(), ui.params, ui.pcMetric, ui.selected);
  }
  async function compare() {
    const ids = [...ui.selected];
    if (ids.length < 2) { compareBox.replaceChildren(el("p", { class: "error" }, "Select two or more runs to compare.")); return; }
    let d;
    try { d = await api("compare", { runs: ids.join(",") }); } catch (e) { compareBox.replaceChildren(errorBox(e)); return; }
    const differ = new Set(d.params_that_differ);
    const row = (k, vals, cls, num, stat) => el("tr", { class: cls, "data-stat": stat },
      el("td", {}, k), el("td", { class: "muted" }, stat || ""),
      ...d.runs.map(id => el("td", { class: num ? "num" : "" }, num ? fmtNum(vals[id]) : (vals[id] ?? ""))));
    const metricRows = Object.entries(d.summary).flatMap(([m, per]) => ["min", "max", "last"].map((s, i) =>
      el("tr", { class: "metric-row" + (i === 0 ? " first" : ""), "data-metric": m, "data-stat": s },
        el("td", {}, i === 0 ? m : ""), el("td", { class: "muted" }, s),
        ...d.runs.map(id => { const v = per[id] ? per[id][s] : null;
          const vals = d.runs.map(x => per[x] && per[x][s]).filter(x => typeof x === "number");
          const best = typeof v === "number" && vals.length > 1 && (s === "min" ? v === Math.min(...vals) : s === "max" ? v === Math.max(...vals) : false);
          return el("td", { class: "num" + (best ? " best" : "") }, fmtNum(v)); }))));
    compareBox.replaceChildren(el("div", { class: "panel" }, el("h3", {}, "Compare runs ",
      el("button", { class: "secondary small", onclick: () => compareBox.replaceChildren() }, "close")),
      el("div", { class: "table-scroll" }, el("table", { id: "compare-table" },
        el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, ""), ...d.runs.map(id => el("th", {}, swatch(id), runLink(id, d.names[id]))))),
        el("tbody", {}, row("status", d.status, ""),
          ...Object.entries(d.params).map(([k, v]) => row(k, v, differ.has(k) ? "diff" : "")),
          ...metricRows)))));
  }
  async function loadExperiments() {
    try {
      const d = await api("experiments");
      const cur = expSel.value;
      expSel.replaceChildren(el("option", { value: "" }, "all experiments"),
        ...d.experiments.map(e => el("option", { value: e.name, selected: e.name === cur }, `${e.name} (${e.runs})`)));
    } catch (e) { /* the runs table shows errors */ }
  }
  writes.textContent = "";
  loadExperiments(); loadRuns();
  return {
    refresh: async () => { await loadExperiments(); await loadRuns(); },
    destroy: () => { charts.destroy(); sysCharts.destroy(); },
  };
};

// ------------------------------------------------------------------ one run
pages.runs = function (main, id) {
  if (!id) { location.hash = "#/experiments"; return {}; }
  const head = el("div", { id: "run-head" });
  const info = el("div", { class: "row", id: "run-info" });
  const grid = el("div", { id: "run-panels" });
  const sysGrid = el("div", { class: "panel-grid", id: "run-system-panels" });
  const sysInfo = el("div", { id: "run-system-info" });
  const sysSection = el("details", { class: "section", id: "run-system", open: true },
    el("summary", {}, "System"), sysInfo, sysGrid);
  const arts = el("div", { class: "artifacts", id: "artifacts" });
  const charts = sectionedPanels(grid, { filter: m => !isSystem(m), empty: "This run logged no metrics." });
  const sysCharts = panelGrid(sysGrid, { filter: isSystem, height: 180 });
  let run = null, curves = {}, artSig = null;
  main.append(head, info,
    el("div", { class: "controls workspace-controls" }, el("b", {}, "Metrics"), chartControls(() => draw())),
    grid, sysSection, el("h3", {}, "Artifacts"), arts);

  function draw() {
    charts.render(curves, [run], state.chart);
    sysCharts.render(curves, [run], state.chart);
  }
  async function load() {
    try { run = await api("run", { id }); }
    catch (e) { head.replaceChildren(el("h2", {}, "Run"), errorBox(e)); return; }
    const r = run;
    document.title = `${r.name} · synadb studio`;
    const dur = (r.end_time || (r.status === "Running" ? Date.now() / 1000 : null)) - r.start_time;
    head.replaceChildren(
      el("p", { class: "crumbs muted" }, el("a", { class: "link", href: "#/experiments" }, "Runs"), " / ", r.experiment),
      el("h2", {}, swatch(r.id), r.name, " ", el("span", { class: "badge status-" + r.status, id: "run-status" }, r.status)),
      el("p", { class: "muted" }, `${r.id} · ${r.experiment} · started ${fmtTime(r.start_time)}` +
        (r.end_time ? ` · ended ${fmtTime(r.end_time)}` : "") + (isFinite(dur) ? ` · ${fmtDur(dur)}` : "")),
      r.error ? el("pre", { class: "bad" }, r.error) : null);
    const summary = {};
    for (const [k, v] of Object.entries(r.metrics)) if (!isSystem(k)) summary[k] = v;
    info.replaceChildren(
      el("div", { class: "panel grow" }, el("h3", {}, "Params"), kv(r.params, "run-params")),
      el("div", { class: "panel grow" }, el("h3", {}, "Summary (last values)"), kv(summary, "run-summary")),
      el("div", { class: "panel grow" }, el("h3", {}, "Tags"),
        r.tags.length ? el("p", { id: "run-tags" }, r.tags.map(t => el("span", { class: "badge tag" }, t)), " ") : null,
        Object.keys(r.tag_values).length || !r.tags.length ? kv(r.tag_values, "run-tag-values") : null,
        r.models.length ? el("div", { id: "run-models" }, el("h3", {}, "Models from this run"),
          r.models.map(m => el("div", {}, el("a", { class: "link", href: "#/models/" + encodeURIComponent(m.name) }, `${m.name} v${m.version}`),
            " ", el("span", { class: "badge stage-" + m.stage }, m.stage)))) : null));
    const sysMetrics = r.metric_names.filter(isSystem);
    sysSection.style.display = sysMetrics.length ? "" : "none";
    try { curves = (await api("series", { runs: id })).series; } catch (e) { grid.replaceChildren(errorBox(e)); return; }
    const sysRows = {};
    for (const m of sysMetrics) if (curves[m] && curves[m][id]) {
      const c = curves[m][id]; sysRows[m.slice(7)] = `last ${fmtNum(c.last)} · min ${fmtNum(c.min)} · max ${fmtNum(c.max)}`;
    }
    sysInfo.replaceChildren(kv(sysRows, "system-table"));
    draw();
    const sig = JSON.stringify(r.artifact_info);
    if (sig !== artSig) { artSig = sig; renderArtifacts(arts, id, r.artifact_info); }
  }
  load();
  return { refresh: load, destroy: () => { charts.destroy(); sysCharts.destroy(); document.title = "synadb studio"; } };
};

// ------------------------------------------------------------------ media
const rawUrl = (run, name) => "/api/artifact/raw?" + new URLSearchParams({ run, name });
const MEDIA_KINDS = { histogram: "histogram", table: "table", plot: "plot" };

/* Where an artifact sits in a series logged over steps, if it does:
 * W&B's layout (media/images/<key>/<step>[_<i>].png, media/histograms/
 * <key>/<step>.histogram.json, ...) or any name ending in a number
 * (samples/step_10.png, weights/hist_3). */
function mediaSlot(name, info) {
  const kind = (info.type === "image" || info.type === "figure") && String(info.mime || "").startsWith("image/") ? "image"
    : MEDIA_KINDS[info.type] || null;
  if (!kind) return null;
  let m = name.match(/^media\/[a-z]+\/(.+)\/(\d+)(?:_(\d+))?((?:\.[A-Za-z]\w*)+)$/);
  if (m) return { kind, key: m[1], step: Number(m[2]), index: m[3] === undefined ? 0 : Number(m[3]) };
  m = name.match(/^(.*?)(\d+)((?:\.[A-Za-z]\w*)*)$/);
  if (m) return { kind, key: (m[1].replace(/(^|[\/_\-.])step[_\-]?$/i, "$1").replace(/[\/_\-.]+$/, "") || m[1]) + m[3],
                  step: typeof info.step === "number" ? info.step : Number(m[2]), index: 0 };
  return { kind, key: name, step: typeof info.step === "number" ? info.step : null, index: 0 };
}

/* Artifacts of a run, typed media first: images, histograms, tables and
 * plots logged at several steps get one viewer with a step slider; tables
 * sort; an image's caption (W&B keeps it beside it, as <image>.json) shows
 * under it; anything else shows as text or hex, with a download link. */
function renderArtifacts(box, runId, infos) {
  const names = Object.keys(infos).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  box.replaceChildren();
  if (!names.length) { box.append(el("p", { class: "muted" }, "none")); return; }
  const captions = {};  // image name -> its caption artifact
  for (const n of names) if (n.endsWith(".json") && infos[n.slice(0, -5)] && mediaSlot(n.slice(0, -5), infos[n.slice(0, -5)]))
    captions[n.slice(0, -5)] = n;
  const sidecars = new Set(Object.values(captions));
  const groups = new Map(), singles = [];
  for (const name of names) {
    if (sidecars.has(name)) continue;
    const slot = mediaSlot(name, infos[name]);
    if (!slot) { singles.push(name); continue; }
    const key = slot.kind + "\u0000" + slot.key;
    if (!groups.has(key)) groups.set(key, { kind: slot.kind, key: slot.key, items: [] });
    groups.get(key).items.push({ name, info: infos[name], step: slot.step, index: slot.index, caption: captions[name] });
  }
  for (const g of groups.values()) {
    if (new Set(g.items.map(i => i.step)).size > 1 || g.items.length > 1) box.append(stepViewer(runId, g));
    else box.append(artifactBox(runId, g.items[0].name, g.items[0].info, g.items[0].caption,
                                g.items[0].name.startsWith("media/") ? `${g.key} · step ${g.items[0].step}` : null));
  }
  for (const name of singles) box.append(artifactBox(runId, name, infos[name]));
}

function artifactHeader(runId, name, info, title) {
  return el("div", { class: "artifact-head" }, el("b", { title: name }, title || name), " ",
    el("span", { class: "muted" }, `${info.type} · ${fmtBytes(info.size)} · `),
    el("a", { class: "link", href: rawUrl(runId, name), target: "_blank", rel: "noopener", download: name.split("/").pop() }, "download"));
}

const captionCache = new Map();
function captionOf(runId, sidecar, info) {
  if (info && info.caption) return Promise.resolve(info.caption);
  if (!sidecar) return Promise.resolve("");
  const k = runId + "\u0000" + sidecar;
  if (!captionCache.has(k)) captionCache.set(k, api("artifact", { run: runId, name: sidecar })
    .then(a => { try { return String(JSON.parse(a.text || "{}").caption || ""); } catch (e) { return ""; } })
    .catch(() => ""));
  return captionCache.get(k);
}

/* The artifact's content, into `body`. */
function fillArtifact(body, runId, name, info, sidecar) {
  if ((info.type === "image" || info.type === "figure") && String(info.mime || "").startsWith("image/") &&
      ["image/png", "image/jpeg", "image/gif", "image/svg+xml"].includes(info.mime)) {
    const cap = el("figcaption", {});
    body.append(el("figure", {}, el("img", { alt: name, src: rawUrl(runId, name) }), cap));
    captionOf(runId, sidecar, info).then(c => { cap.textContent = c; });
    return Promise.resolve();
  }
  return api("artifact", { run: runId, name }).then(a => {
    if (a.view === "image") body.append(el("figure", {}, el("img", { alt: name, src: rawUrl(runId, name) })));
    else if (a.view === "table") body.append(sortableTable(a.columns, a.data),
      a.rows > a.data.length ? el("p", { class: "muted" }, `first ${a.data.length} of ${a.rows} rows`) : "");
    else if (a.view === "histogram") body.append(histogramChart(a));
    else if (a.view === "plot") body.append(plotChart(a));
    else if (a.view === "text") body.append(el("pre", {}, a.text));
    else if (a.view === "hex") body.append(el("pre", { class: "hex" }, (a.hex || []).join("\n")));
    return a;
  }).catch(e => body.append(errorBox(e)));
}

function artifactBox(runId, name, info, sidecar, title) {
  const body = el("div", { class: "artifact-body" });
  const box = el("div", { class: "artifact panel", "data-artifact": name }, artifactHeader(runId, name, info, title), body);
  fillArtifact(body, runId, name, info, sidecar);
  return box;
}

function cellText(c) {
  return typeof c === "number" ? fmtNum(c) : (c === null || c === undefined ? "" : typeof c === "object" ? JSON.stringify(c) : String(c));
}

function sortableTable(columns, data) {
  let sort = { col: -1, dir: 1 };
  const table = el("table", { class: "artifact-table" });
  function render() {
    const rows = sort.col < 0 ? data : data.slice().sort((a, b) => {
      const x = a[sort.col], y = b[sort.col];
      if (typeof x === "number" && typeof y === "number") return (x - y) * sort.dir;
      return String(x ?? "").localeCompare(String(y ?? ""), undefined, { numeric: true }) * sort.dir;
    });
    table.replaceChildren(
      el("thead", {}, el("tr", {}, columns.map((c, i) => el("th", {
        class: "sortable" + (sort.col === i ? (sort.dir > 0 ? " sorted-asc" : " sorted-desc") : ""), "data-col": String(i),
        onclick: () => { sort = { col: i, dir: sort.col === i ? -sort.dir : 1 }; render(); } }, c)))),
      el("tbody", {}, rows.map(row => el("tr", {}, row.map(c => el("td", { class: typeof c === "number" ? "num" : "" }, cellText(c)))))));
  }
  render();
  return el("div", { class: "table-scroll" }, table);
}

function histogramChart(a, height) {
  const box = el("div", { class: "histogram" });
  const edges = a.bins, counts = a.counts;
  const canvas = el("canvas", { width: 520, height: height || 200, class: "hist-canvas" });
  box.append(canvas, el("div", { class: "muted small" }, `${fmtNum(edges[0])} … ${fmtNum(edges[edges.length - 1])} · ${counts.reduce((s, x) => s + x, 0)} values`));
  const ctx = canvas.getContext("2d");
  const max = Math.max(1, ...counts), w = canvas.width, h = canvas.height - 4;
  ctx.fillStyle = PALETTE[0];
  counts.forEach((c, i) => {
    const x0 = i / counts.length * w, bw = Math.max(1, w / counts.length - 1);
    const bh = c / max * h;
    ctx.fillRect(x0, h - bh, bw, bh);
  });
  return box;
}

/* A W&B-style plot over a table: line and scatter as uPlot charts, bar
 * and histogram as bars; anything else as its (sortable) table. */
function plotChart(a) {
  const box = el("div", { class: "plot", "data-plot": a.plot || "" }, a.title ? el("div", { class: "plot-title" }, a.title) : null);
  const col = n => a.columns.indexOf(n);
  const xi = col(a.x), yi = col(a.y);
  const nums = i => a.data.map(r => typeof r[i] === "number" ? r[i] : null);
  if ((a.plot === "line" || a.plot === "scatter") && xi >= 0 && yi >= 0) {
    const pairs = a.data.map(r => [r[xi], r[yi]]).filter(p => typeof p[0] === "number" && typeof p[1] === "number");
    if (a.plot === "line") pairs.sort((p, q) => p[0] - q[0]);
    const chartBox = el("div", { class: "chart-body" });
    box.append(chartBox);
    requestAnimationFrame(() => new uPlot({
      width: Math.max(300, (chartBox.clientWidth || 420) - 2), height: 240, legend: { show: false },
      scales: { x: { time: false } },
      series: [{ label: a.x }, { label: a.y, stroke: PALETTE[0], width: 1.6,
        paths: a.plot === "scatter" ? () => null : undefined, points: { show: a.plot === "scatter", size: 5, fill: PALETTE[0] } }],
      axes: [{ label: a.x }, { label: a.y }],
    }, a.plot === "scatter" ? [pairs.map(p => p[0]), pairs.map(p => p[1])] : [pairs.map(p => p[0]), pairs.map(p => p[1])], chartBox));
  } else if (a.plot === "bar" && xi >= 0 && yi >= 0) {
    box.append(barChart(a.data.map(r => cellText(r[xi])), nums(yi)));
  } else if (a.plot === "histogram" && (yi >= 0 || xi >= 0 || a.columns.length === 1)) {
    const v = nums(yi >= 0 ? yi : xi >= 0 ? xi : 0).filter(x => x !== null);
    const lo = Math.min(...v), hi = Math.max(...v), n = 30, counts = new Array(n).fill(0);
    for (const x of v) counts[Math.min(n - 1, Math.floor((x - lo) / ((hi - lo) || 1) * n))]++;
    box.append(histogramChart({ bins: Array.from({ length: n + 1 }, (_, i) => lo + (hi - lo) * i / n), counts }));
  } else {
    box.append(sortableTable(a.columns, a.data));
  }
  if (a.rows > a.data.length) box.append(el("p", { class: "muted" }, `first ${a.data.length} of ${a.rows} rows`));
  return box;
}

function barChart(labels, values) {
  const canvas = el("canvas", { width: 520, height: 220, class: "hist-canvas bar-canvas" });
  const ctx = canvas.getContext("2d");
  const max = Math.max(1e-12, ...values.map(v => Math.abs(v || 0))), n = Math.max(1, values.length);
  const h = canvas.height - 24, bw = canvas.width / n;
  ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center";
  values.forEach((v, i) => {
    const bh = Math.abs(v || 0) / max * (h - 4);
    ctx.fillStyle = color(i); ctx.fillRect(i * bw + 2, h - bh, Math.max(1, bw - 4), bh);
    ctx.fillStyle = "#4a5263"; ctx.fillText(String(labels[i]).slice(0, 12), i * bw + bw / 2, canvas.height - 8);
  });
  return canvas;
}

/* Histograms logged at many steps, one row per step (the first at the top),
 * darker where more values fell: how a distribution moves in training. */
function histogramHeatmap(hists) {
  const lo = Math.min(...hists.map(h => h.bins[0])), hi = Math.max(...hists.map(h => h.bins[h.bins.length - 1]));
  const cols = 64, rowH = Math.max(3, Math.min(14, Math.floor(220 / hists.length)));
  const canvas = el("canvas", { width: 520, height: rowH * hists.length, class: "hist-canvas heatmap" });
  const ctx = canvas.getContext("2d");
  hists.forEach((h, r) => {
    const acc = new Array(cols).fill(0);
    h.counts.forEach((c, i) => {
      const mid = (h.bins[i] + h.bins[i + 1]) / 2;
      acc[Math.min(cols - 1, Math.max(0, Math.floor((mid - lo) / ((hi - lo) || 1) * cols)))] += c;
    });
    const m = Math.max(1e-12, ...acc);
    acc.forEach((c, i) => {
      if (!c) return;
      ctx.fillStyle = `rgba(47,111,222,${0.15 + 0.85 * c / m})`;
      ctx.fillRect(i * canvas.width / cols, r * rowH, canvas.width / cols + 0.5, rowH);
    });
  });
  return el("div", { class: "heatmap-box" }, el("div", { class: "muted small" }, `over steps (rows, first at the top) · ${fmtNum(lo)} … ${fmtNum(hi)}`), canvas);
}

/* Media logged at several steps: a slider picks the step (every image of
 * that step shows, with its caption); histograms also get the view over
 * all steps at once. */
function stepViewer(runId, group) {
  const items = group.items.slice().sort((a, b) => (a.step ?? 0) - (b.step ?? 0) || a.index - b.index);
  const steps = Array.from(new Set(items.map(i => i.step)));
  const title = group.key;
  const slider = el("input", { type: "range", min: "0", max: String(steps.length - 1), value: String(steps.length - 1), class: "step-slider" });
  const label = el("span", { class: "step-label" });
  const view = el("div", { class: "step-view" });
  const box = el("div", { class: "artifact panel media-series", "data-series": title, "data-kind": group.kind },
    el("div", { class: "artifact-head" }, el("b", {}, title), " ", el("span", { class: "muted" }, `${group.kind} · ${steps.length} steps`)),
    el("div", { class: "controls" }, el("span", {}, "step"), slider, label), view);
  const cache = new Map();
  const fetchView = it => { if (!cache.has(it.name)) cache.set(it.name, api("artifact", { run: runId, name: it.name })); return cache.get(it.name); };
  let shown = 0;
  async function show() {
    const step = steps[Number(slider.value)], now = ++shown;
    const at = items.filter(i => i.step === step);
    label.textContent = `${step ?? ""} (${Number(slider.value) + 1}/${steps.length}) · ${at.map(i => i.name).join(", ")}`;
    box.dataset.step = String(step);
    const parts = el("div", { class: "step-items" });
    for (const it of at) {
      const one = el("div", { class: "step-item", "data-artifact": it.name });
      parts.append(one);
      if (group.kind === "image") {
        fillArtifact(one, runId, it.name, it.info, it.caption);
        one.append(el("a", { class: "link small", href: rawUrl(runId, it.name), download: it.name.split("/").pop() }, "download"));
      } else {
        try {
          const a = await fetchView(it);
          if (now !== shown) return;
          one.append(a.view === "histogram" ? histogramChart(a) : a.view === "plot" ? plotChart(a) :
            a.view === "table" ? sortableTable(a.columns, a.data) : el("pre", {}, a.text || ""));
        } catch (e) { one.append(errorBox(e)); }
      }
    }
    if (now === shown) view.replaceChildren(parts);
  }
  slider.addEventListener("input", show);
  show();
  if (group.kind === "histogram") {
    const over = el("div", { class: "over-steps" });
    box.append(over);
    const pick = items.length > 60 ? items.filter((_, i) => i % Math.ceil(items.length / 60) === 0) : items;
    Promise.all(pick.map(fetchView))
      .then(all => { const hs = all.filter(a => a.view === "histogram"); if (hs.length) over.replaceChildren(histogramHeatmap(hs)); })
      .catch(e => over.replaceChildren(errorBox(e)));
  }
  return box;
}

// ------------------------------------------------------------------ models
pages.models = function (main, arg) {
  const list = el("div", { class: "panel", id: "models-list" });
  const detail = el("div", { id: "model-detail" });
  let current = arg;
  main.append(el("h2", {}, "Models"), list, detail);
  async function loadList() {
    let d;
    try { d = await api("models"); } catch (e) { list.replaceChildren(errorBox(e)); return; }
    if (!d.models.length) { list.replaceChildren(el("p", { class: "muted" }, "No models in this file.")); return; }
    if (!current || !d.models.some(m => m.name === current)) current = d.models[0].name;
    list.replaceChildren(el("table", { id: "models-table" },
      el("thead", {}, el("tr", {}, ["model", "versions", "latest", "production", "stages", "latest from run"].map(h => el("th", {}, h)))),
      el("tbody", {}, d.models.map(m => el("tr", { class: m.name === current ? "selected" : "", "data-model": m.name },
        el("td", {}, el("a", { class: "link", href: "#/models/" + encodeURIComponent(m.name) }, m.name)),
        el("td", { class: "num" }, m.versions), el("td", { class: "num" }, m.latest),
        el("td", {}, m.production ? "v" + m.production : "—"),
        el("td", {}, Object.entries(m.stages).map(([s, n]) => el("span", { class: "badge stage-" + s }, `${s} ${n}`), " ")),
        el("td", {}, m.latest_run ? runLink(m.latest_run, m.latest_run_name) : "—"))))),
      el("p", { class: "muted" }, `${d.stats.versions} versions, ${fmtBytes(d.stats.total_bytes)}`));
  }
  async function loadModel() {
    if (!current) return;
    let d;
    try { d = await api("model", { name: current }); } catch (e) { detail.replaceChildren(errorBox(e)); return; }
    const verifyOut = el("span", { id: "verify-models-result" });
    const stageCell = v => {
      const badge = el("span", { class: "badge stage-badge stage-" + v.stage }, v.stage);
      if (!state.allowWrites) return el("td", {}, badge);
      const sel = el("select", { class: "stage-select" }, ["Development", "Staging", "Production", "Archived"].map(s =>
        el("option", { value: s, selected: s === v.stage }, s)));
      sel.addEventListener("change", async () => {
        try { await post("model/stage", { name: current, version: v.version, stage: sel.value }); }
        catch (e) { alert(e.message); }
        await loadList(); await loadModel();
      });
      return el("td", {}, badge, " ", sel);
    };
    const check = v => v.verified === true ? el("span", { class: "ok" }, "✓ verified") :
      v.verified === false ? el("span", { class: "bad" }, "✗ MISMATCH") : el("span", { class: "muted" }, "not checked");
    detail.replaceChildren(el("div", { class: "panel" },
      el("h3", {}, "Versions of ", current),
      el("div", { class: "controls" }, el("button", { id: "verify-models-btn", onclick: async () => {
        verifyOut.textContent = "hashing…";
        try { await api("model/verify", { name: current }); verifyOut.textContent = ""; await loadModel(); }
        catch (e) { verifyOut.textContent = e.message; }
      } }, "Verify checksums"), verifyOut),
      el("div", { class: "table-scroll" }, el("table", { id: "versions-table" },
        el("thead", {}, el("tr", {}, ["version", "stage", "source run", "size", "sha256", "checksum", "created", "tags", "metadata", "description"].map(h => el("th", {}, h)))),
        el("tbody", {}, d.versions.map(v => el("tr", { "data-version": v.version },
          el("td", { class: "num" }, "v" + v.version), stageCell(v),
          el("td", { class: "source-run" }, v.run_id ? [swatch(v.run_id), runLink(v.run_id, v.run_name)] : el("span", { class: "muted" }, "—")),
          el("td", { class: "num" }, fmtBytes(v.size_bytes)),
          el("td", { title: v.checksum }, el("code", {}, v.checksum.slice(0, 12) + "…")), el("td", {}, check(v)),
          el("td", {}, fmtTime(v.created_at)),
          el("td", {}, Object.entries(v.tags).map(([k, x]) => `${k}=${x}`).join(", ")),
          el("td", {}, Object.entries(v.metadata).map(([k, x]) => `${k}=${typeof x === "object" ? JSON.stringify(x) : x}`).join(", ")),
          el("td", {}, v.description))))))),
      el("div", { class: "panel" }, el("h3", {}, "Stage history"),
        d.stage_history.length ? el("table", { id: "stage-history" },
          el("thead", {}, el("tr", {}, ["when", "version", "from", "to", "user", "comment"].map(h => el("th", {}, h)))),
          el("tbody", {}, d.stage_history.slice().reverse().map(h => el("tr", {}, el("td", {}, fmtTime(h.at)),
            el("td", { class: "num" }, "v" + h.version), el("td", {}, h.from || "—"),
            el("td", {}, el("span", { class: "badge stage-" + h.to }, h.to)), el("td", {}, h.user || ""), el("td", {}, h.comment || "")))))
          : el("p", { class: "muted" }, "No stage changes yet.")));
  }
  loadList().then(loadModel);
  return { refresh: async () => { await loadList(); await loadModel(); } };
};

// ------------------------------------------------------------------ vectors
pages.vectors = function (main) {
  const info = el("div", { class: "muted", id: "vectors-info" });
  const dims = el("select", { id: "pca-dims" }, el("option", { value: "2" }, "2D"), el("option", { value: "3" }, "3D"));
  const colorSel = el("select", { id: "pca-color" }, el("option", { value: "" }, "no colour"));
  const canvas = el("canvas", { id: "pca-canvas", width: 680, height: 500 });
  const axes = el("div", { class: "muted small", id: "pca-axes" });
  const legend = el("div", { class: "legend", id: "pca-legend" });
  const keyIn = el("input", { id: "nn-key", placeholder: "vector key" });
  const nn = el("div", { id: "neighbors" });
  let proj = null, angle = { yaw: 0.6, pitch: 0.3 }, drag = null, screen = [];
  let hl = null;  // {query, neighbors: [keys]} shown on the map
  main.append(el("h2", {}, "Vectors"), info,
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("div", { class: "controls" }, el("b", {}, "PCA"), dims, el("span", {}, "colour by"), colorSel,
        el("span", { class: "muted" }, "click a point for its neighbours; drag to turn 3D")), canvas, axes, legend),
      el("div", { class: "panel grow" }, el("h3", {}, "Nearest neighbours"),
        el("div", { class: "controls" }, keyIn, el("button", { id: "nn-btn", onclick: () => neighbors(keyIn.value) }, "Search")), nn)));
  dims.addEventListener("change", loadProjection);
  colorSel.addEventListener("change", loadProjection);
  keyIn.addEventListener("keydown", e => { if (e.key === "Enter") neighbors(keyIn.value); });

  async function load() {
    let d;
    try { d = await api("vectors"); } catch (e) { info.replaceChildren(errorBox(e)); return; }
    if (!d.present) { info.textContent = "This file holds no vector store."; return; }
    info.textContent = `${d.count} vectors · ${d.dimensions} dimensions · metric ${d.metric}`;
    // Only categorical fields colour the map: free text has a value per point.
    const cur = colorSel.value;
    colorSel.replaceChildren(el("option", { value: "" }, "no colour"), ...d.fields.map(f => el("option", { value: f, selected: f === cur }, f)));
    if (!cur && d.fields.length) colorSel.value = d.fields[0];
    if (!keyIn.value && d.sample_keys.length) keyIn.value = d.sample_keys[0];
    await loadProjection();
  }
  async function loadProjection() {
    const params = { dims: dims.value, color: colorSel.value };
    if (hl) params.include = [hl.query, ...hl.neighbors].join(",");
    try { proj = await api("vectors/projection", params); }
    catch (e) { info.append(errorBox(e)); return; }
    draw();
  }
  function colorsFor(values) {
    if (!values.length) return { of: () => PALETTE[0], legend: [] };
    const cats = Array.from(new Set(values.map(String))).sort();
    const idx = new Map(cats.map((c, i) => [c, i]));
    return { of: v => color(idx.get(String(v))), legend: cats.slice(0, 30).map(c => [c, color(idx.get(c))]) };
  }
  function draw() {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.highlighted = "0";
    if (!proj || !proj.points.length) { ctx.fillText("no vectors", 20, 20); return; }
    const three = proj.points[0].length === 3;
    const cy = Math.cos(angle.yaw), sy = Math.sin(angle.yaw), cp = Math.cos(angle.pitch), sp = Math.sin(angle.pitch);
    const pts = proj.points.map(p => {
      if (!three) return [p[0], p[1], 0];
      const x = p[0] * cy + p[2] * sy, z = -p[0] * sy + p[2] * cy;
      return [x, p[1] * cp - z * sp, p[1] * sp + z * cp];
    });
    let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
    for (const p of pts) { lo = [Math.min(lo[0], p[0]), Math.min(lo[1], p[1])]; hi = [Math.max(hi[0], p[0]), Math.max(hi[1], p[1])]; }
    const left = 46, right = 14, top = 14, bottom = 40;
    const w = canvas.width - left - right, h = canvas.height - top - bottom;
    const s = Math.min(w / ((hi[0] - lo[0]) || 1), h / ((hi[1] - lo[1]) || 1));
    const cmap = colorsFor(proj.colors);
    const order = pts.map((_, i) => i).sort((a, b) => pts[a][2] - pts[b][2]);
    const pct = i => proj.explained[i] !== undefined ? ` (${(100 * proj.explained[i]).toFixed(1)}% of variance)` : "";
    // Axes: in 2D the first two components; in 3D the view turns, so the
    // labels name the components on the caption only.
    ctx.strokeStyle = "#c4c9d4"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, top + h); ctx.lineTo(left + w, top + h); ctx.stroke();
    ctx.fillStyle = "#4a5263"; ctx.font = "12px system-ui, sans-serif";
    if (!three) {
      ctx.textAlign = "center"; ctx.fillText("PC1" + pct(0), left + w / 2, canvas.height - 12);
      ctx.save(); ctx.translate(16, top + h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("PC2" + pct(1), 0, 0); ctx.restore();
      ctx.textAlign = "start";
    }
    axes.textContent = (three ? ["PC1", "PC2", "PC3"] : ["PC1", "PC2"]).map((n, i) => n + pct(i)).join(" · ") +
      (proj.total > proj.keys.length ? ` · ${proj.keys.length} of ${proj.total} shown` : "");
    const marked = new Map();
    if (hl) { hl.neighbors.forEach(k => marked.set(k, "neighbor")); marked.set(hl.query, "query"); }
    screen = new Array(pts.length);
    const r = pts.length > 2000 ? 2 : 3.5;
    for (const i of order) {
      const X = left + (pts[i][0] - lo[0]) * s + (w - (hi[0] - lo[0]) * s) / 2;
      const Y = top + h - (pts[i][1] - lo[1]) * s - (h - (hi[1] - lo[1]) * s) / 2;
      screen[i] = [X, Y];
      ctx.fillStyle = proj.colors.length ? cmap.of(proj.colors[i]) : PALETTE[0];
      ctx.globalAlpha = hl ? 0.25 : 0.8;
      ctx.beginPath(); ctx.arc(X, Y, r, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    if (hl) {
      // Lines from the query to each neighbour, rings on the neighbours, a
      // large dark marker on the query: drawn last, so always on top.
      const at = new Map(proj.keys.map((k, i) => [k, i]));
      const q = at.get(hl.query);
      let shown = 0;
      ctx.strokeStyle = "rgba(29,35,48,0.35)";
      for (const k of hl.neighbors) if (q !== undefined && at.has(k)) {
        ctx.beginPath(); ctx.moveTo(...screen[q]); ctx.lineTo(...screen[at.get(k)]); ctx.stroke();
      }
      ctx.lineWidth = 2.5; ctx.strokeStyle = "#e4572e"; ctx.fillStyle = "#ffd7cc";
      for (const k of hl.neighbors) if (at.has(k)) {
        const [X, Y] = screen[at.get(k)];
        ctx.beginPath(); ctx.arc(X, Y, 6, 0, 2 * Math.PI); ctx.fill(); ctx.stroke(); shown++;
      }
      if (q !== undefined) {
        const [X, Y] = screen[q];
        ctx.fillStyle = "#1d2330"; ctx.strokeStyle = "#f2a516"; ctx.lineWidth = 3;
        ctx.beginPath(); ctx.moveTo(X, Y - 10); ctx.lineTo(X + 10, Y); ctx.lineTo(X, Y + 10); ctx.lineTo(X - 10, Y); ctx.closePath();
        ctx.fill(); ctx.stroke(); shown++;
        ctx.fillStyle = "#1d2330"; ctx.fillText(hl.query, X + 12, Y - 8);
      }
      ctx.lineWidth = 1;
      canvas.dataset.highlighted = String(shown);
    }
    legend.replaceChildren(
      ...cmap.legend.map(([label, c]) => el("span", {}, el("i", { style: "background:" + c }), label)),
      hl ? el("span", {}, el("i", { class: "query-mark" }), "query") : null,
      hl ? el("span", {}, el("i", { class: "neighbor-mark" }), "neighbours") : null);
  }
  canvas.addEventListener("mousedown", e => { drag = { x: e.offsetX, y: e.offsetY, moved: false }; });
  canvas.addEventListener("mousemove", e => {
    if (!drag || !proj || !proj.points.length || proj.points[0].length !== 3) return;
    angle.yaw += (e.offsetX - drag.x) / 150; angle.pitch += (e.offsetY - drag.y) / 150;
    drag = { x: e.offsetX, y: e.offsetY, moved: true }; draw();
  });
  canvas.addEventListener("mouseup", e => {
    const moved = drag && drag.moved; drag = null;
    if (moved || !proj) return;
    let best = -1, bd = 100;
    screen.forEach(([X, Y], i) => { const d = (X - e.offsetX) ** 2 + (Y - e.offsetY) ** 2; if (d < bd) { bd = d; best = i; } });
    if (best >= 0) { keyIn.value = proj.keys[best]; neighbors(proj.keys[best]); }
  });
  async function neighbors(key) {
    if (!key) return;
    let d;
    try { d = await api("vectors/neighbors", { key, k: 10 }); } catch (e) { nn.replaceChildren(errorBox(e)); return; }
    hl = { query: key, neighbors: d.neighbors.map(n => n.key) };
    const onMap = proj ? new Set(proj.keys) : new Set();
    if (![key, ...hl.neighbors].every(k => onMap.has(k))) await loadProjection(); else draw();
    nn.replaceChildren(el("p", { class: "muted" }, "metadata: " + JSON.stringify(d.metadata || {})),
      el("table", { id: "neighbors-table" }, el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "distance"), el("th", {}, "metadata"))),
        el("tbody", {}, d.neighbors.map(n => el("tr", {}, el("td", {}, el("a", { class: "link", onclick: () => { keyIn.value = n.key; neighbors(n.key); } }, n.key)),
          el("td", { class: "num" }, fmtNum(n.score)), el("td", {}, JSON.stringify(n.metadata || {})))))),
      el("button", { class: "secondary", id: "nn-clear", onclick: () => { hl = null; nn.replaceChildren(); draw(); } }, "clear highlight"));
  }
  load();
  return { refresh: load };
};

// ------------------------------------------------------------------ start
(async function start() {
  try {
    const d = await api("overview");
    state.allowWrites = d.allow_writes;
    document.getElementById("file").textContent = d.info.path + (d.allow_writes ? " (read-write)" : " (read-only)");
  } catch (e) { /* the page shows the error */ }
  window.addEventListener("hashchange", route);
  route();
  poll();
})();
