//! `GET /`: the live page, one self-contained HTML document (no external assets: the
//! machines are offline). It lists the jobs with their throughput, watermark lag, late and
//! malformed counts and checkpoints; shows every http sink table live over server-sent events,
//! as a table and an SVG chart of a numeric column over a time column (`window_start` unless
//! the user picks others); and has a SQL box that submits a job. With tenants configured it
//! asks for a key and keeps it in a `weir_key` cookie, which the API accepts.

use axum::response::{Html, IntoResponse, Response};

pub(crate) async fn page() -> Response {
    Html(PAGE).into_response()
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weir</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3}.err{color:#b00}textarea{width:100%;height:8em;font:13px monospace}
svg{border:1px solid #ddd;background:#fff}.rows{max-height:20em;overflow:auto;display:inline-block}
</style></head><body>
<h1>weir</h1>
<div id="login" hidden>Key: <input id="key" type="password"> <button id="keybtn">use</button></div>
<h2>Jobs</h2><div id="jobs">loading…</div>
<h2>Tables</h2><div id="tables"></div>
<h2>Submit a job</h2>
<textarea id="sql" placeholder="CREATE TABLE … ; INSERT INTO … SELECT …;"></textarea><br>
<button id="submit">Submit</button> <span id="submitted"></span>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
document.getElementById("keybtn").onclick = () => {
  document.cookie = "weir_key=" + encodeURIComponent($("key").value) + "; path=/; SameSite=Strict";
  location.reload();
};
async function api(path, opts) {
  const r = await fetch(path, opts);
  if (r.status === 401) { $("login").hidden = false; throw new Error("a key is needed"); }
  return r;
}
async function jobs() {
  try {
    const r = await api("/v1/jobs");
    const j = await r.json();
    if (!r.ok) { $("jobs").innerHTML = '<span class="err">' + esc(j.error) + "</span>"; return; }
    let h = "<table><tr><th>job</th><th>status</th><th>events/s</th><th>events in</th><th>out</th>" +
      "<th>watermark lag (s)</th><th>late</th><th>malformed</th><th>checkpoint</th></tr>";
    for (const x of j.jobs) {
      const lag = x.watermark_lag_ms === null ? "–" : (x.watermark_lag_ms / 1000).toFixed(1);
      const cp = x.checkpoint.epoch ? "#" + x.checkpoint.epoch + " (" + x.checkpoint.duration_ms + " ms)" : "–";
      h += "<tr><td>" + esc(x.id) + "</td><td>" + esc(x.status) + "</td><td>" + x.events_per_s +
        "</td><td>" + x.events_in + "</td><td>" + x.events_out + "</td><td>" + lag + "</td><td>" +
        x.late_rows + "</td><td>" + x.malformed + "</td><td>" + cp + "</td></tr>";
    }
    $("jobs").innerHTML = h + "</table>";
  } catch (e) { $("jobs").textContent = e.message; }
}
const views = {};
function view(t) {
  const div = document.createElement("div");
  div.className = "table-view";
  div.innerHTML = "<h3>" + esc(t.name) + '</h3>x <select class="x"></select> y <select class="y"></select><br>' +
    '<svg width="640" height="220" class="chart"></svg><br><div class="rows"></div>';
  $("tables").appendChild(div);
  const v = { t, div, rows: new Map(), order: [], n: 0 };
  const xs = div.querySelector(".x"), ys = div.querySelector(".y");
  for (const c of t.columns) { xs.add(new Option(c, c)); ys.add(new Option(c, c)); }
  xs.value = t.columns.includes("window_start") ? "window_start" : (t.columns.find((c) => /time|ts|start/.test(c)) || t.columns[0]);
  ys.value = t.columns.find((c) => c !== xs.value && !t.key.includes(c) && /count|cnt|sum|avg|total|max|min|num|score|value/.test(c)) ||
    t.columns.find((c) => c !== xs.value) || t.columns[0];
  xs.onchange = ys.onchange = () => draw(v);
  views[t.name] = v;
  const src = new EventSource("/v1/tables/" + encodeURIComponent(t.name) + "/subscribe");
  const take = (rows, reset) => {
    if (reset) { v.rows.clear(); v.order = []; }
    for (const r of rows) {
      const k = t.key.length ? JSON.stringify(t.key.map((c) => r[c])) : String(v.n++);
      if (r.op === "-D" || r.op === "-U") { v.rows.delete(k); continue; }
      if (!v.rows.has(k)) v.order.push(k);
      v.rows.set(k, r);
    }
    if (!t.key.length && v.order.length > 500) { for (const k of v.order.splice(0, v.order.length - 500)) v.rows.delete(k); }
    draw(v);
  };
  src.addEventListener("snapshot", (e) => take(JSON.parse(e.data), true));
  src.addEventListener("rows", (e) => take(JSON.parse(e.data), false));
}
function draw(v) {
  const cols = v.t.columns;
  const rows = v.order.filter((k) => v.rows.has(k)).map((k) => v.rows.get(k));
  let h = "<table><tr>" + cols.map((c) => "<th>" + esc(c) + "</th>").join("") + "</tr>";
  for (const r of rows.slice(-100)) h += "<tr>" + cols.map((c) => "<td>" + esc(r[c] ?? "") + "</td>").join("") + "</tr>";
  v.div.querySelector(".rows").innerHTML = h + "</table>";
  const x = v.div.querySelector(".x").value, y = v.div.querySelector(".y").value;
  const pts = rows.map((r) => [Date.parse(String(r[x]).replace(" ", "T") + "Z") || Number(r[x]), Number(r[y])])
    .filter((p) => isFinite(p[0]) && isFinite(p[1])).sort((a, b) => a[0] - b[0]);
  const svg = v.div.querySelector("svg");
  if (!pts.length) { svg.innerHTML = ""; return; }
  const W = 640, H = 220, P = 30;
  const x0 = pts[0][0], x1 = pts[pts.length - 1][0], ymax = Math.max(...pts.map((p) => p[1]), 0), ymin = Math.min(...pts.map((p) => p[1]), 0);
  const sx = (t) => P + (x1 === x0 ? (W - 2 * P) / 2 : (t - x0) / (x1 - x0) * (W - 2 * P));
  const sy = (t) => H - P - (ymax === ymin ? 0 : (t - ymin) / (ymax - ymin) * (H - 2 * P));
  const bw = Math.max(2, Math.min(30, (W - 2 * P) / pts.length - 2));
  svg.innerHTML = pts.map((p) => '<rect class="bar" x="' + (sx(p[0]) - bw / 2) + '" y="' + Math.min(sy(p[1]), sy(0)) +
    '" width="' + bw + '" height="' + Math.abs(sy(0) - sy(p[1])) + '" fill="#4a7bd0"><title>' + esc(p[1]) + "</title></rect>").join("") +
    '<text x="4" y="14" font-size="11">' + esc(y) + " max " + esc(ymax) + "</text>";
}
async function tables() {
  try {
    const r = await api("/v1/tables");
    const j = await r.json();
    for (const t of j.tables || []) if (!views[t.name]) view(t);
  } catch (e) { $("tables").textContent = e.message; }
}
$("submit").onclick = async () => {
  try {
    const r = await api("/v1/jobs", { method: "POST", body: $("sql").value });
    const j = await r.json();
    $("submitted").innerHTML = r.ok ? "started " + esc(j.jobs.join(", ")) : '<span class="err">' + esc(j.error) + "</span>";
    jobs(); tables();
  } catch (e) { $("submitted").textContent = e.message; }
};
jobs(); tables();
setInterval(jobs, 2000); setInterval(tables, 5000);
</script></body></html>
"##;
