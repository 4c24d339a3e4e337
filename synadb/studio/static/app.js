/* synadb studio: one page, five views, no build step and no network beyond
 * this server.  Text from the file only ever reaches the page through
 * textContent (the el() helper), never innerHTML. */
"use strict";

const PALETTE = ["#2f6fde", "#e4572e", "#29a36a", "#9c4fd6", "#f2a516", "#17a2b8",
                 "#d6336c", "#6c757d", "#8c564b", "#2ca02c", "#1f3b73", "#bcbd22"];
const POLL_MS = 1000;
const state = { page: null, view: null, stamp: null, allowWrites: false };

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
function errorBox(e) { return el("div", { class: "error" }, String(e.message || e)); }
function color(i) { return PALETTE[i % PALETTE.length]; }

/* A uPlot line chart in `box`; series = [{label, x:[], y:[]}].  Series are
 * aligned on the union of their x values (runs log different steps). */
function lineChart(box, series, opts) {
  opts = opts || {};
  const xs = Array.from(new Set(series.flatMap(s => s.x))).sort((a, b) => a - b);
  const pos = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const s of series) {
    const col = new Array(xs.length).fill(null);
    s.x.forEach((x, i) => { const y = s.y[i]; col[pos.get(x)] = typeof y === "number" ? y : null; });
    data.push(col);
  }
  const width = Math.max(320, (box.clientWidth || 800) - 4);
  const cfg = {
    width, height: opts.height || 300,
    scales: { x: { time: false } },
    legend: { show: true },
    series: [{ label: opts.xLabel || "step" },
             ...series.map((s, i) => ({ label: s.label, stroke: color(i), width: 1.5,
                                        spanGaps: true, points: { show: xs.length < 60 } }))],
    axes: [{ label: opts.xLabel || "step" }, { label: opts.yLabel || "" }],
  };
  box.textContent = "";
  if (!xs.length) { box.appendChild(el("div", { class: "muted" }, "no points yet")); return null; }
  const chart = new uPlot(cfg, data, box);
  chart._sig = series.map(s => s.label).join("\u0000");
  return chart;
}

// ------------------------------------------------------------------ router
const pages = {};
function route() {
  const m = location.hash.match(/^#\/(\w+)(?:\/(.*))?$/);
  const page = (m && pages[m[1]]) ? m[1] : "overview";
  const arg = m && m[2] ? decodeURIComponent(m[2]) : null;
  for (const a of document.querySelectorAll("#nav a"))
    a.classList.toggle("active", a.dataset.page === page);
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
    const card = (k, v) => el("div", { class: "card" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k));
    const table = (title, obj) => el("div", { class: "panel" }, el("h3", {}, title),
      el("table", {}, el("tbody", {}, Object.entries(obj).sort((a, b) => b[1] - a[1])
        .map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", { class: "num" }, v))))));
    const result = el("div", { id: "verify-result" });
    box.replaceChildren(
      el("div", { class: "cards", id: "overview-cards" },
        card("keys", i.keys), card("file size", fmtBytes(i.size_bytes)),
        card("bytes in use", fmtBytes(i.used_bytes)), card("format version", i.format_version),
        card("experiments", d.experiments), card("runs", d.runs), card("models", d.models),
        card("vectors", d.vectors), card("mode", d.allow_writes ? "read-write" : "read-only")),
      el("div", { class: "row", style: "margin-top:14px" },
        el("div", { class: "grow" }, table("Keys by type", d.by_type)),
        el("div", { class: "grow" }, table("Keys by component", d.by_namespace))),
      el("div", { class: "panel" }, el("h3", {}, "Integrity"),
        el("p", { class: "muted" }, "Scan every record of the file for damage (reads only)."),
        el("button", { id: "verify-btn", onclick: async () => {
          result.replaceChildren("checking…");
          try {
            const r = await api("verify");
            result.replaceChildren(el("p", { class: r.ok ? "ok" : "bad" },
              r.ok ? `OK: ${r.records} records, no damage` : "DAMAGED"), el("pre", {}, r.text));
          } catch (e) { result.replaceChildren(errorBox(e)); }
        } }, "Verify file"), result),
      el("p", { class: "muted" }, `created ${fmtTime(i.created_ms / 1000)} · checkpoint at ${i.checkpoint_offset}`));
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

// ------------------------------------------------------------------ experiments
pages.experiments = function (main) {
  const ui = { exp: "", filter: "", sort: { col: "start", dir: -1 }, selected: new Set(), metric: null,
               runs: [], params: [], metrics: [], chart: null, detail: null };
  const expSel = el("select", { id: "exp-select" }, el("option", { value: "" }, "all experiments"));
  const filter = el("input", { id: "run-filter", placeholder: "filter: text, or param=value" });
  const metricSel = el("select", { id: "metric-select" });
  const tableBox = el("div", { class: "scroll", id: "runs-box" });
  const chartBox = el("div", { class: "chart", id: "metric-chart" });
  const compareBox = el("div", { id: "compare-box" });
  const detailBox = el("div", { id: "run-detail" });
  const writes = el("span");
  main.append(el("h2", {}, "Experiments"),
    el("div", { class: "controls" }, expSel, filter,
      el("button", { id: "compare-btn", onclick: () => compare() }, "Compare selected"),
      el("button", { class: "secondary", onclick: () => { ui.selected.clear(); renderTable(); loadChart(); } }, "Clear selection"),
      writes),
    el("div", { class: "panel" }, tableBox),
    el("div", { class: "panel" }, el("div", { class: "controls" }, el("b", {}, "Metric"), metricSel,
      el("span", { class: "muted" }, "selected runs, or the first ten shown")), chartBox),
    compareBox, detailBox);
  expSel.addEventListener("change", () => { ui.exp = expSel.value; loadRuns(); });
  filter.addEventListener("input", () => { ui.filter = filter.value; renderTable(); loadChart(); });
  metricSel.addEventListener("change", () => { ui.metric = metricSel.value; loadChart(true); });

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
    const val = r => col === "name" ? r.name : col === "status" ? r.status : col === "experiment" ? r.experiment :
      col === "start" ? r.start_time : col.startsWith("p:") ? r.params[col.slice(2)] : r.metrics[col.slice(2)];
    return runs.slice().sort((a, b) => {
      let x = val(a), y = val(b);
      if (x === undefined || x === null) return 1; if (y === undefined || y === null) return -1;
      const nx = Number(x), ny = Number(y);
      if (!isNaN(nx) && !isNaN(ny)) { x = nx; y = ny; }
      return x < y ? -dir : x > y ? dir : 0;
    });
  }
  function th(label, col) {
    const cls = "sortable" + (ui.sort.col === col ? (ui.sort.dir > 0 ? " sorted-asc" : " sorted-desc") : "");
    return el("th", { class: cls, "data-col": col, onclick: () => {
      ui.sort = { col, dir: ui.sort.col === col ? -ui.sort.dir : 1 }; renderTable(); } }, label);
  }
  function renderTable() {
    const runs = visible();
    const head = el("tr", {}, el("th", {}, ""), th("run", "name"), th("status", "status"), th("experiment", "experiment"),
      th("started", "start"), ...ui.params.map(p => th(p, "p:" + p)), ...ui.metrics.map(m => th(m + " (last)", "m:" + m)),
      state.allowWrites ? el("th", {}, "") : null);
    const rows = runs.map(r => el("tr", { "data-run-id": r.id, class: ui.selected.has(r.id) ? "selected" : "" },
      el("td", {}, el("input", { type: "checkbox", checked: ui.selected.has(r.id), onchange: e => {
        e.target.checked ? ui.selected.add(r.id) : ui.selected.delete(r.id); renderTable(); loadChart(true); } })),
      el("td", {}, el("a", { class: "link run-name", onclick: () => showRun(r.id) }, r.name)),
      el("td", {}, el("span", { class: "badge status-" + r.status }, r.status)),
      el("td", {}, r.experiment), el("td", {}, fmtTime(r.start_time)),
      ...ui.params.map(p => el("td", {}, r.params[p] ?? "")),
      ...ui.metrics.map(m => el("td", { class: "num" }, fmtNum(r.metrics[m]))),
      state.allowWrites ? el("td", {}, el("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete run ${r.name}?`)) return;
        try { await post("run/delete", { id: r.id }); ui.selected.delete(r.id); await loadRuns(); } catch (e) { alert(e.message); }
      } }, "delete")) : null));
    tableBox.replaceChildren(el("table", { id: "runs-table" }, el("thead", {}, head), el("tbody", {}, rows)),
      runs.length ? "" : el("p", { class: "muted" }, "No runs."));
  }
  async function loadRuns() {
    let d;
    try { d = await api("runs", ui.exp ? { experiment: ui.exp } : null); }
    catch (e) { tableBox.replaceChildren(errorBox(e)); return; }
    ui.runs = d.runs; ui.params = d.params; ui.metrics = d.metrics;
    const ids = new Set(d.runs.map(r => r.id));
    for (const id of [...ui.selected]) if (!ids.has(id)) ui.selected.delete(id);
    if (!ui.metric || !d.metrics.includes(ui.metric))
      ui.metric = d.metrics.includes("loss") ? "loss" : d.metrics[0] || null;
    metricSel.replaceChildren(...d.metrics.map(m => el("option", { value: m, selected: m === ui.metric }, m)));
    renderTable();
    await loadChart();
  }
  async function loadChart(rebuild) {
    if (!ui.metric) { chartBox.replaceChildren(el("p", { class: "muted" }, "No metrics logged yet.")); ui.chart = null; return; }
    const runs = ui.selected.size ? ui.runs.filter(r => ui.selected.has(r.id)) :
      visible().filter(r => ui.metric in r.metrics).slice(0, 10);
    if (!runs.length) { chartBox.replaceChildren(el("p", { class: "muted" }, "No run has this metric.")); ui.chart = null; return; }
    let d;
    try { d = await api("metrics", { metric: ui.metric, runs: runs.map(r => r.id).join(",") }); }
    catch (e) { chartBox.replaceChildren(errorBox(e)); return; }
    const series = runs.filter(r => d.series[r.id]).map(r => ({ label: r.name, x: d.series[r.id].step, y: d.series[r.id].value }));
    const sig = series.map(s => s.label).join("\u0000");
    if (ui.chart && !rebuild && ui.chart._sig === sig) {
      // Same runs: update the data in place (the curves grow, the zoom stays).
      const xs = Array.from(new Set(series.flatMap(s => s.x))).sort((a, b) => a - b);
      const pos = new Map(xs.map((x, i) => [x, i]));
      const data = [xs, ...series.map(s => { const c = new Array(xs.length).fill(null);
        s.x.forEach((x, i) => { c[pos.get(x)] = typeof s.y[i] === "number" ? s.y[i] : null; }); return c; })];
      ui.chart.setData(data);
    } else {
      if (ui.chart) ui.chart.destroy();
      ui.chart = lineChart(chartBox, series, { yLabel: ui.metric });
    }
    chartBox.dataset.points = String(series.reduce((n, s) => n + s.x.length, 0));
  }
  async function compare() {
    const ids = [...ui.selected];
    if (ids.length < 2) { compareBox.replaceChildren(el("p", { class: "error" }, "Select two or more runs to compare.")); return; }
    let d;
    try { d = await api("compare", { runs: ids.join(",") }); } catch (e) { compareBox.replaceChildren(errorBox(e)); return; }
    const differ = new Set(d.params_that_differ);
    const row = (k, vals, cls, num) => el("tr", { class: cls }, el("td", {}, k),
      ...d.runs.map(id => el("td", { class: num ? "num" : "" }, num ? fmtNum(vals[id]) : (vals[id] ?? ""))));
    compareBox.replaceChildren(el("div", { class: "panel" }, el("h3", {}, "Compare runs"),
      el("table", { id: "compare-table" },
        el("thead", {}, el("tr", {}, el("th", {}, ""), ...d.runs.map(id => el("th", {}, d.names[id])))),
        el("tbody", {}, row("status", d.status, ""),
          ...Object.entries(d.params).map(([k, v]) => row(k, v, differ.has(k) ? "diff" : "")),
          ...Object.entries(d.metrics).map(([k, v]) => row(k + " (last)", v, "", true))))));
  }
  async function showRun(id) {
    ui.detail = id;
    let r;
    try { r = await api("run", { id }); } catch (e) { detailBox.replaceChildren(errorBox(e)); return; }
    const kv = obj => el("table", {}, el("tbody", {}, Object.entries(obj).map(([k, v]) =>
      el("tr", {}, el("td", {}, k), el("td", {}, typeof v === "number" ? fmtNum(v) : String(v))))));
    const arts = el("div", { class: "artifacts", id: "artifacts" });
    detailBox.replaceChildren(el("div", { class: "panel" },
      el("h3", {}, "Run ", r.name, " ", el("span", { class: "badge status-" + r.status }, r.status)),
      el("p", { class: "muted" }, `${r.id} · ${r.experiment} · started ${fmtTime(r.start_time)}` +
        (r.end_time ? ` · ended ${fmtTime(r.end_time)}` : "") + (r.tags.length ? " · tags: " + r.tags.join(", ") : "")),
      r.error ? el("pre", { class: "bad" }, r.error) : null,
      el("div", { class: "row" }, el("div", { class: "grow" }, el("h3", {}, "Params"), kv(r.params)),
        el("div", { class: "grow" }, el("h3", {}, "Metrics (last)"), kv(r.metrics)),
        Object.keys(r.tag_values).length ? el("div", { class: "grow" }, el("h3", {}, "Tags"), kv(r.tag_values)) : null),
      el("h3", {}, "Artifacts"), arts));
    const names = Object.keys(r.artifact_info);
    if (!names.length) arts.append(el("p", { class: "muted" }, "none"));
    for (const name of names) {
      const box = el("div", { class: "artifact", "data-artifact": name },
        el("b", {}, name), " ", el("span", { class: "muted" }, `${r.artifact_info[name].type} · ${fmtBytes(r.artifact_info[name].size)} · `),
        el("a", { class: "link", href: "/api/artifact/raw?" + new URLSearchParams({ run: id, name }), target: "_blank", rel: "noopener" }, "raw"));
      arts.append(box);
      api("artifact", { run: id, name }).then(a => {
        if (a.view === "image") box.append(el("div", {}, el("img", { alt: name, src: "/api/artifact/raw?" + new URLSearchParams({ run: id, name }) })));
        else if (a.view === "table") box.append(el("div", { class: "scroll" }, el("table", { class: "artifact-table" },
          el("thead", {}, el("tr", {}, a.columns.map(c => el("th", {}, c)))),
          el("tbody", {}, a.data.map(row => el("tr", {}, row.map(c => el("td", { class: typeof c === "number" ? "num" : "" },
            typeof c === "number" ? fmtNum(c) : (c === null ? "" : typeof c === "object" ? JSON.stringify(c) : String(c))))))))),
          a.rows > a.data.length ? el("p", { class: "muted" }, `first ${a.data.length} of ${a.rows} rows`) : "");
        else if (a.view === "text") box.append(el("pre", {}, a.text));
        else if (a.view === "hex") box.append(el("pre", { class: "hex" }, (a.hex || []).join("\n")));
      }).catch(e => box.append(errorBox(e)));
    }
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
    destroy: () => { if (ui.chart) ui.chart.destroy(); },
  };
};

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
      el("thead", {}, el("tr", {}, ["model", "versions", "latest", "production", "stages"].map(h => el("th", {}, h)))),
      el("tbody", {}, d.models.map(m => el("tr", { class: m.name === current ? "selected" : "", "data-model": m.name },
        el("td", {}, el("a", { class: "link", onclick: () => { current = m.name; loadList(); loadModel(); } }, m.name)),
        el("td", { class: "num" }, m.versions), el("td", { class: "num" }, m.latest),
        el("td", {}, m.production ? "v" + m.production : "—"),
        el("td", {}, Object.entries(m.stages).map(([s, n]) => el("span", { class: "badge stage-" + s }, `${s} ${n}`), " ")))))),
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
      el("div", { class: "scroll" }, el("table", { id: "versions-table" },
        el("thead", {}, el("tr", {}, ["version", "stage", "size", "sha256", "checksum", "created", "tags", "metadata", "description"].map(h => el("th", {}, h)))),
        el("tbody", {}, d.versions.map(v => el("tr", { "data-version": v.version },
          el("td", { class: "num" }, "v" + v.version), stageCell(v), el("td", { class: "num" }, fmtBytes(v.size_bytes)),
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
  const canvas = el("canvas", { id: "pca-canvas", width: 640, height: 480 });
  const legend = el("div", { class: "legend" });
  const keyIn = el("input", { id: "nn-key", placeholder: "vector key" });
  const nn = el("div", { id: "neighbors" });
  let proj = null, angle = { yaw: 0.6, pitch: 0.3 }, drag = null, screen = [];
  main.append(el("h2", {}, "Vectors"), info,
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("div", { class: "controls" }, el("b", {}, "PCA"), dims, el("span", {}, "colour by"), colorSel,
        el("span", { class: "muted" }, "click a point for its neighbours; drag to turn 3D")), canvas, legend),
      el("div", { class: "panel grow" }, el("h3", {}, "Nearest neighbours"),
        el("div", { class: "controls" }, keyIn, el("button", { onclick: () => neighbors(keyIn.value) }, "Search")), nn)));
  dims.addEventListener("change", loadProjection);
  colorSel.addEventListener("change", loadProjection);
  keyIn.addEventListener("keydown", e => { if (e.key === "Enter") neighbors(keyIn.value); });

  async function load() {
    let d;
    try { d = await api("vectors"); } catch (e) { info.replaceChildren(errorBox(e)); return; }
    if (!d.present) { info.textContent = "This file holds no vector store."; return; }
    info.textContent = `${d.count} vectors · ${d.dimensions} dimensions · metric ${d.metric}`;
    const cur = colorSel.value;
    colorSel.replaceChildren(el("option", { value: "" }, "no colour"), ...d.fields.map(f => el("option", { value: f, selected: f === cur }, f)));
    if (!cur && d.fields.length) colorSel.value = d.fields[0];
    if (!keyIn.value && d.sample_keys.length) keyIn.value = d.sample_keys[0];
    await loadProjection();
  }
  async function loadProjection() {
    try { proj = await api("vectors/projection", { dims: dims.value, color: colorSel.value }); }
    catch (e) { info.append(errorBox(e)); return; }
    draw();
  }
  function colorsFor(values) {
    if (!values.length) return { of: () => PALETTE[0], legend: [] };
    const nums = values.filter(v => typeof v === "number");
    if (nums.length === values.length && new Set(values).size > 12) {
      const lo = Math.min(...nums), hi = Math.max(...nums);
      return { of: v => { const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
        return `hsl(${240 - 240 * t}, 70%, 45%)`; }, legend: [[`${fmtNum(lo)}`, "hsl(240,70%,45%)"], [`${fmtNum(hi)}`, "hsl(0,70%,45%)"]] };
    }
    const cats = Array.from(new Set(values.map(String)));
    const idx = new Map(cats.map((c, i) => [c, i]));
    return { of: v => color(idx.get(String(v))), legend: cats.slice(0, 20).map(c => [c, color(idx.get(c))]) };
  }
  function draw() {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!proj || !proj.points.length) { ctx.fillText("no vectors", 20, 20); return; }
    const three = proj.points[0].length === 3;
    const cy = Math.cos(angle.yaw), sy = Math.sin(angle.yaw), cp = Math.cos(angle.pitch), sp = Math.sin(angle.pitch);
    const pts = proj.points.map(p => {
      if (!three) return [p[0], p[1], 0];
      const x = p[0] * cy + p[2] * sy, z = -p[0] * sy + p[2] * cy;
      return [x, p[1] * cp - z * sp, p[1] * sp + z * cp];
    });
    const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
    const lo = [Math.min(...xs), Math.min(...ys)], hi = [Math.max(...xs), Math.max(...ys)];
    const pad = 20, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
    const s = Math.min(w / ((hi[0] - lo[0]) || 1), h / ((hi[1] - lo[1]) || 1));
    const cmap = colorsFor(proj.colors);
    const order = pts.map((_, i) => i).sort((a, b) => pts[a][2] - pts[b][2]);
    screen = new Array(pts.length);
    for (const i of order) {
      const X = pad + (pts[i][0] - lo[0]) * s + (w - (hi[0] - lo[0]) * s) / 2;
      const Y = canvas.height - pad - (pts[i][1] - lo[1]) * s - (h - (hi[1] - lo[1]) * s) / 2;
      screen[i] = [X, Y];
      ctx.fillStyle = proj.colors.length ? cmap.of(proj.colors[i]) : PALETTE[0];
      ctx.globalAlpha = 0.8;
      ctx.beginPath(); ctx.arc(X, Y, pts.length > 2000 ? 2 : 3.5, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#6b7385";
    ctx.fillText(`PC variance: ${proj.explained.map(v => (100 * v).toFixed(1) + "%").join(", ")}` +
      (proj.total > proj.keys.length ? ` · ${proj.keys.length} of ${proj.total} shown` : ""), 8, 14);
    legend.replaceChildren(...cmap.legend.map(([label, c]) => el("span", {}, el("i", { style: "background:" + c }), label)));
  }
  canvas.addEventListener("mousedown", e => { drag = { x: e.offsetX, y: e.offsetY, moved: false }; });
  canvas.addEventListener("mousemove", e => {
    if (!drag || !proj || proj.points[0].length !== 3) return;
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
    nn.replaceChildren(el("p", { class: "muted" }, "metadata: " + JSON.stringify(d.metadata || {})),
      el("table", { id: "neighbors-table" }, el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "distance"), el("th", {}, "metadata"))),
        el("tbody", {}, d.neighbors.map(n => el("tr", {}, el("td", {}, el("a", { class: "link", onclick: () => { keyIn.value = n.key; neighbors(n.key); } }, n.key)),
          el("td", { class: "num" }, fmtNum(n.score)), el("td", {}, JSON.stringify(n.metadata || {})))))));
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
