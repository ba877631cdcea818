// uwsgi-logship console. Plain script, no build step, no third-party code.
// Log text is data: it only ever reaches the page through textContent.
"use strict";

const TOKEN_KEY = "logship-api-token";
const MAX_ROWS = 5000;          // rows kept while Live appends; the oldest go first
const MAX_QUEUED = 20000;       // live records held while paused; older ones are skipped
const CLASSES = ["2xx", "3xx", "4xx", "5xx", "other"];
const FILTERS = ["app", "source", "status", "regex", "since", "until", "n"];
const SOURCE_COLOURS = 12;
const FLUSH_MS = 100;
const CHUNK = 100;

const $ = (id) => document.getElementById(id);
const state = {
  page: "logs",
  lastId: null,        // id of the newest record received (shown or queued)
  rows: 0,
  live: null,          // the running follow: {abort, ...}
  queue: [],
  skipped: 0,
  skippedTotal: 0,     // live lines never shown (paused or arriving too fast)
  paused: false,
  frame: 0,
  flushedAt: 0,
  statusTimer: 0,
  volume: null,
  shown: 0,            // lines appended by Live (for the benchmark)
};
window.__console = state;

// ---- text --------------------------------------------------------------------------
// ANSI escape sequences are dropped; other controls are shown as visible escapes.
const ANSI = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]/g;
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
function clean(text) {
  if (text == null) return "";
  return String(text).replace(ANSI, "").replace(CONTROLS, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0")
                        : "\\u" + code.toString(16).padStart(4, "0");
  });
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function stamp(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.` +
    pad(d.getMilliseconds(), 3);
}

function ago(seconds) {
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
  return `${(s / 86400).toFixed(1)}d ago`;
}

function notice(text) { $("notice").textContent = text || ""; }

// ---- the API ------------------------------------------------------------------------
function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

class Unauthorised extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { ...headers(), ...(options.headers || {}) },
    cache: "no-store", credentials: "omit",
  });
  if (response.status === 401) {
    askToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
    throw new Unauthorised("token needed");
  }
  return response;
}

async function apiJson(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

function askToken(error) {
  $("login").hidden = false;
  $("login-error").textContent = error;
  $("login-token").focus();
}
$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("login-token").value.trim();
  const response = await fetch("/v1/sources?window=1m", {
    headers: { Authorization: "Bearer " + token }, cache: "no-store", credentials: "omit",
  });
  if (response.status === 401) {
    $("login-error").textContent = "That token was refused.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-token").value = "";
  $("login").hidden = true;
  route();
});

// ---- routing ------------------------------------------------------------------------
function params() { return new URLSearchParams(location.search); }

function route() {
  const page = (location.hash.replace("#", "") || "logs").split("?")[0];
  state.page = ["logs", "alarms", "sources", "status"].includes(page) ? page : "logs";
  for (const section of document.querySelectorAll(".page")) {
    section.hidden = section.id !== "page-" + state.page;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.page === state.page);
  }
  clearInterval(state.statusTimer);
  if (state.page !== "logs") stopLive();  // no stream left running behind another page
  notice("");
  const load = { logs: loadLogs, alarms: loadAlarms, sources: loadSources,
                 status: loadStatus }[state.page];
  load().catch(failed);
  if (state.page === "status" || state.page === "sources") {
    state.statusTimer = setInterval(() => load().catch(failed), 5000);
  }
}

function failed(error) {
  if (error instanceof Unauthorised || error.name === "AbortError") return;
  notice(error.message);
}

window.addEventListener("hashchange", route);
window.addEventListener("popstate", () => { formFromUrl(); route(); });

// ---- Logs: filters --------------------------------------------------------------------
const form = $("filters");

function formFromUrl() {
  const given = params();
  for (const name of FILTERS) {
    const field = form.elements[name];
    if (name === "n") field.value = given.get("n") || "1000";
    else field.value = given.get(name) || "";
  }
  if (!given.has("since") && !given.has("until")) form.elements.since.value = "1h";
}

function filters() {
  const out = {};
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) out[name] = value;
  }
  return out;
}

function applyFilters() {
  const query = new URLSearchParams(filters()).toString();
  history.pushState(null, "", (query ? "?" + query : location.pathname) + "#logs");
  stopLive();
  loadLogs().catch(failed);
}

form.addEventListener("submit", (event) => { event.preventDefault(); applyFilters(); });
for (const button of form.querySelectorAll(".presets button")) {
  button.addEventListener("click", () => {
    form.elements.since.value = button.dataset.since;
    form.elements.until.value = "";
    applyFilters();
  });
}

function query(extra) {
  const given = { ...filters(), ...extra };
  for (const key of Object.keys(given)) if (given[key] == null) delete given[key];
  return new URLSearchParams(given).toString();
}

// ---- Logs: the lines ------------------------------------------------------------------
const body = $("lines-body");
const box = $("lines-box");

function row(record, cls) {
  const tr = el("div", null, "row");
  tr.setAttribute("role", "row");
  tr.dataset.id = record.id;
  tr.dataset.app = record.app;
  tr.dataset.source = record.source;
  if (cls) tr.className = "row " + cls;
  if (record.kind === "marker") tr.classList.add("marker");
  const moment = record.emitted_at != null ? record.emitted_at : record.received_at;
  const origin = `${clean(record.app)}[${clean(record.source)}]`;
  const status = record.status;
  const path = clean(record.path);
  const pathCell = el("span", path);
  pathCell.title = path;
  tr.append(el("span", stamp(moment)),
            el("span", origin, "s" + (hash(origin) % SOURCE_COLOURS)),
            el("span", clean(record.method)), pathCell,
            el("span", status == null ? "" : String(status),
               status == null ? "num" : "num st" + Math.floor(status / 100)),
            el("span", record.msecs == null ? "" : String(record.msecs), "num"),
            el("span", clean(record.line), "text"));
  return tr;
}

function atBottom() {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

// Rows go in chunks of CHUNK: the browser skips laying out and painting chunks out of
// view (content-visibility), and Live drops the oldest rows a chunk at a time.
function trim(bound) {
  while (state.rows > bound && body.firstElementChild) {
    state.rows -= body.firstElementChild.rowCount || 0;
    body.firstElementChild.remove();
  }
}

function lastChunk() {
  let chunk = body.lastElementChild;
  if (!chunk || chunk.rowCount >= CHUNK) {
    chunk = el("div", null, "chunk");
    chunk.rowCount = 0;
    body.append(chunk);
  }
  return chunk;
}

// A search shows all it found (at most the API's 10,000); Live keeps about MAX_ROWS.
function showRecords(records, bound) {
  let start = 0;
  while (start < records.length) {
    const chunk = lastChunk();
    const take = Math.min(CHUNK - chunk.rowCount, records.length - start);
    const fragment = document.createDocumentFragment();
    for (let i = start; i < start + take; i++) fragment.append(row(records[i]));
    chunk.append(fragment);
    chunk.rowCount += take;
    start += take;
  }
  state.rows += records.length;
  trim(bound + CHUNK - 1);
}

async function loadLogs() {
  const answer = await apiJson("/v1/logs?" + query({}));
  body.textContent = "";
  state.rows = 0;
  showRecords(answer.records, answer.records.length);
  const records = answer.records;
  state.lastId = records.length ? records[records.length - 1].id : null;
  box.scrollTop = box.scrollHeight;
  // For bench/console.py: when the rows were first painted (after the next frame).
  requestAnimationFrame(() => setTimeout(() => { state.paintedAt = performance.now(); }));
  $("lines-foot").textContent = `${records.length} line${records.length === 1 ? "" : "s"}` +
    (records.length >= Number(filters().n || 100) ?
      " (the newest; narrow the filters or the range for more)" : "");
  try {
    await loadVolume();
  } finally {
    document.body.dataset.loaded = String(Date.now());  // lines and chart are in
  }
}

// Clicking a line shows its neighbours from the same source just under it.
body.addEventListener("click", async (event) => {
  const tr = event.target.closest(".row");
  if (!tr || !tr.dataset.id || tr.classList.contains("context")) return;
  const open = tr.nextSibling;
  if (open && open.classList && open.classList.contains("neighbours")) {
    open.remove();
    tr.classList.remove("picked");
    return;
  }
  const id = Number(tr.dataset.id);
  const same = { app: tr.dataset.app, source: tr.dataset.source };
  try {
    const [before, after] = await Promise.all([
      apiJson("/v1/logs?" + new URLSearchParams({ ...same, until: ((id + 1) / 1e6).toFixed(6),
                                                 n: "11" })),
      apiJson("/v1/logs?" + new URLSearchParams({ ...same, after: String(id), n: "10" })),
    ]);
    const holder = el("div", null, "neighbours");
    holder.append(el("div", `${clean(same.app)}[${clean(same.source)}]: the lines around this one`,
                     "foot"));
    for (const record of [...before.records, ...after.records]) {
      holder.append(row(record, record.id === id ? "context picked" : "context"));
    }
    tr.classList.add("picked");
    tr.after(holder);
  } catch (error) { failed(error); }
});

// ---- Logs: Live -----------------------------------------------------------------------
// The follow stream (NDJSON) is read with fetch so that the token stays in a header.
// After a break it resumes after the last id received: no gap, no repeat.
$("live").addEventListener("change", () => {
  if ($("live").checked) startLive(); else stopLive();
});

function liveState(text) { $("live-state").textContent = text; }

function startLive() {
  stopLive();
  $("live").checked = true;
  const run = { controller: null, stopped: false };
  state.live = run;
  state.queue = [];
  state.skipped = 0;
  follow(run);
}

function stopLive() {
  const run = state.live;
  state.live = null;
  $("live").checked = false;
  liveState("");
  if (run) {
    run.stopped = true;
    if (run.controller) run.controller.abort();
  }
}

async function follow(run) {
  let backoff = 250;
  while (!run.stopped) {
    run.controller = new AbortController();
    const extra = { follow: "1", until: null, n: null };
    if (state.lastId != null) extra.after = String(state.lastId);
    else extra.limit = "0";
    try {
      const response = await api("/v1/logs?" + query(extra),
                                 { signal: run.controller.signal });
      if (!response.ok) {
        const text = await response.text();
        throw new Error(`live: HTTP ${response.status} ${text.slice(0, 200)}`);
      }
      liveState("● live");
      backoff = 250;
      await readStream(response.body, run);
    } catch (error) {
      if (run.stopped) return;
      if (error instanceof Unauthorised) { stopLive(); return; }
      liveState("reconnecting…");
    }
    if (run.stopped) return;
    liveState("reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 5000);
  }
}

async function readStream(stream, run) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done || run.stopped) return;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) {
      if (!line) continue;  // heartbeat
      const doc = JSON.parse(line);
      if ("cursor" in doc) {
        if (state.lastId == null || doc.cursor > state.lastId) state.lastId = doc.cursor;
        continue;
      }
      if (state.lastId != null && doc.id <= state.lastId) continue;
      state.lastId = doc.id;
      state.queue.push(doc);
    }
    if (state.queue.length > MAX_QUEUED) {
      state.skipped += state.queue.length - MAX_QUEUED;
      state.queue.splice(0, state.queue.length - MAX_QUEUED);
    }
    schedule();
  }
}

// DOM updates are batched: at most one per FLUSH_MS, in an animation frame, whatever
// the rate of arrival.
function schedule() {
  if (state.frame) return;
  const wait = Math.max(0, FLUSH_MS - (performance.now() - state.flushedAt));
  state.frame = setTimeout(() => requestAnimationFrame(flush), wait);
}

function flush() {
  state.frame = 0;
  state.flushedAt = performance.now();
  if (state.paused || !state.queue.length) return;
  let batch = state.queue;
  state.queue = [];
  if (batch.length > MAX_ROWS) {
    state.skipped += batch.length - MAX_ROWS;
    batch = batch.slice(batch.length - MAX_ROWS);
  }
  if (state.skipped) {
    state.skippedTotal += state.skipped;
    lastChunk().append(el("div", `… ${state.skipped} lines not shown (paused or too fast); ` +
                          "search the range to see them", "gap"));
    state.skipped = 0;
  }
  showRecords(batch, MAX_ROWS);
  state.shown += batch.length;
  box.scrollTop = box.scrollHeight;
  liveState(`● live · ${state.rows} rows`);
}

// Scrolling up pauses the view (the stream keeps being read); back at the bottom resumes.
// Only a scroll the user made pauses: rows growing to their real height as they come
// into view also move the scroll position.
let userScrolled = -Infinity;
for (const kind of ["wheel", "keydown", "pointerdown", "touchstart"]) {
  box.addEventListener(kind, () => { userScrolled = performance.now(); }, { passive: true });
}
box.addEventListener("scroll", () => {
  const bottom = atBottom();
  const paused = bottom ? false : (performance.now() - userScrolled < 1500 || state.paused);
  if (paused === state.paused) return;
  state.paused = paused;
  if (state.live) liveState(paused ? "❚❚ paused (scroll down to resume)" : "● live");
  if (!paused) schedule();
});

// ---- Logs: the volume chart -------------------------------------------------------------
const canvas = $("volume");
const drag = { from: null, to: null };

async function loadVolume() {
  const given = filters();
  const volume = await apiJson("/v1/stats/volume?" + new URLSearchParams(
    Object.fromEntries(Object.entries(given).filter(([key]) => key !== "n"))));
  state.volume = volume;
  canvas.dataset.series = JSON.stringify(volume.series);
  canvas.dataset.total = String(volume.total);
  const legend = $("volume-legend");
  legend.textContent = "";
  for (const name of CLASSES) {
    const sum = volume.series[name].reduce((a, b) => a + b, 0);
    const item = el("span");
    item.append(el("span", null, "swatch k" + name), `${name} ${sum}`);
    legend.append(item);
  }
  legend.append(el("span", `${volume.total} lines, ${volume.step}s per bar` +
                   (volume.truncated ? " (counted up to the scan limit)" : "")));
  drawVolume();
}

function colour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawVolume() {
  const volume = state.volume;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  if (!volume) return;
  const n = volume.times.length;
  const totals = volume.times.map((_, i) => CLASSES.reduce((s, c) => s + volume.series[c][i], 0));
  const top = Math.max(1, ...totals);
  const plot = { left: 40, right: width - 6, top: 6, bottom: height - 16 };
  const barWidth = (plot.right - plot.left) / n;
  g.font = "10px system-ui, sans-serif";
  g.fillStyle = colour("--muted");
  g.fillText(String(top), 4, plot.top + 8);
  g.fillText("0", 4, plot.bottom);
  for (let i = 0; i < n; i++) {
    let y = plot.bottom;
    for (const name of CLASSES) {
      const count = volume.series[name][i];
      if (!count) continue;
      const h = (count / top) * (plot.bottom - plot.top);
      g.fillStyle = colour("--c" + name);
      g.fillRect(plot.left + i * barWidth + 0.5, y - h, Math.max(1, barWidth - 1), h);
      y -= h;
    }
  }
  g.fillStyle = colour("--muted");
  const labels = Math.min(6, n);
  const span = volume.until - volume.since;
  // Seconds on a short range, the date on a long one.
  const [from, to] = span <= 1800 ? [11, 19] : span <= 86400 ? [11, 16] : [5, 16];
  for (let k = 0; k < labels; k++) {
    const i = Math.floor((k * n) / labels);
    const text = stamp(volume.times[i]).slice(from, to);
    g.fillText(text, plot.left + i * barWidth, height - 3);
  }
  if (drag.from != null && drag.to != null) {
    g.fillStyle = colour("--accent");
    g.globalAlpha = 0.2;
    g.fillRect(Math.min(drag.from, drag.to), plot.top, Math.abs(drag.to - drag.from),
               plot.bottom - plot.top);
    g.globalAlpha = 1;
  }
  state.plot = plot;
}

function timeAt(x) {
  const volume = state.volume;
  const plot = state.plot;
  const fraction = Math.min(1, Math.max(0, (x - plot.left) / (plot.right - plot.left)));
  return volume.since + fraction * (volume.until - volume.since);
}

canvas.addEventListener("mousedown", (event) => {
  if (!state.volume) return;
  drag.from = drag.to = event.offsetX;
});
canvas.addEventListener("mousemove", (event) => {
  if (drag.from == null) return;
  drag.to = event.offsetX;
  drawVolume();
});
window.addEventListener("mouseup", () => {
  if (drag.from == null) return;
  const [a, b] = [drag.from, drag.to].sort((x, y) => x - y);
  drag.from = drag.to = null;
  if (b - a < 4) { drawVolume(); return; }
  form.elements.since.value = new Date(timeAt(a) * 1000).toISOString();
  form.elements.until.value = new Date(timeAt(b) * 1000).toISOString();
  applyFilters();
});
window.addEventListener("resize", () => { if (state.page === "logs") drawVolume(); });

// ---- Alarms ---------------------------------------------------------------------------
async function loadAlarms() {
  const tbody = document.querySelector("#alarms tbody");
  const response = await api("/v1/alarms?limit=200");
  if (response.status === 404) {
    tbody.textContent = "";
    const tr = el("tr");
    const td = el("td", "No alarms configured on this collector.");
    td.colSpan = 9;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || "alarms: HTTP " + response.status);
  tbody.textContent = "";
  for (const alarm of answer.alarms) {
    const tr = el("tr");
    tr.dataset.id = alarm.id;
    tr.append(el("td", stamp(alarm.created_at)), el("td", clean(alarm.alarm)),
              el("td", clean(alarm.condition)), el("td", clean(alarm.app)),
              el("td", clean(alarm.source)), el("td", alarm.state, "state-" + alarm.state),
              el("td", String(alarm.attempts), "num"), el("td", clean(alarm.last_error)));
    const cell = el("td");
    if (alarm.state === "dead") {
      const retry = el("button", "Retry", "retry");
      retry.type = "button";
      retry.addEventListener("click", async (event) => {
        event.stopPropagation();
        retry.disabled = true;
        try {
          await apiJson("/v1/alarms/retry", {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ ids: [alarm.id] }),
          });
          await loadAlarms();
        } catch (error) { failed(error); retry.disabled = false; }
      });
      cell.append(retry);
    }
    tr.append(cell);
    tr.addEventListener("click", () => {
      const message = $("alarm-message");
      message.hidden = false;
      message.textContent = `${alarm.alarm} · ${alarm.condition} · ${alarm.app}[${alarm.source}]` +
        ` · ${alarm.count} time(s)\n\n` + clean(alarm.message);
    });
    tbody.append(tr);
  }
}

// ---- Sources ---------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function sparkline(counts) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 22");
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...counts);
  const step = counts.length > 1 ? 120 / (counts.length - 1) : 120;
  const points = counts.map((c, i) => `${(i * step).toFixed(1)},${(21 - (c / top) * 20).toFixed(1)}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  return svg;
}

async function loadSources() {
  const answer = await apiJson("/v1/sources");
  const tbody = document.querySelector("#sources tbody");
  tbody.textContent = "";
  for (const source of answer.sources) {
    const tr = el("tr");
    const origin = `${clean(source.app)}[${clean(source.source)}]`;
    const rate = source.per_minute;
    const spark = el("td");
    spark.append(sparkline(rate));
    const link = el("a", clean(source.source), "s" + (hash(origin) % SOURCE_COLOURS));
    link.href = "?" + new URLSearchParams({ app: source.app, source: source.source,
                                           since: "1h" }) + "#logs";
    const name = el("td");
    name.append(link);
    tr.append(el("td", clean(source.app)), name, el("td", ago(source.last_seen)),
              el("td", String(source.lines), "num"), spark,
              el("td", source.silent ? "silent" : "", source.silent ? "silent" : ""),
              el("td", clean(source.last_line), "text"));
    tbody.append(tr);
  }
  if (!answer.sources.length) {
    const tr = el("tr");
    const td = el("td", "No source has logged in the last hour.");
    td.colSpan = 7;
    tr.append(td);
    tbody.append(tr);
  }
}

// ---- Status ----------------------------------------------------------------------------
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2];
    }
    out.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return out;
}

async function loadStatus() {
  const response = await api("/metrics");
  if (!response.ok) throw new Error("metrics: HTTP " + response.status);
  const metrics = parseMetrics(await response.text());
  const listeners = new Map();
  // The sum of a family's series, or null when the collector has none of it.
  const one = (name) => {
    const found = metrics.filter((m) => m.name === name);
    return found.length ? found.reduce((s, m) => s + m.value, 0) : null;
  };
  for (const m of metrics) {
    const name = m.labels.listener;
    if (!name) continue;
    if (!listeners.has(name)) {
      listeners.set(name, { datagrams: 0, accepted: 0, lines: 0, dropped: {}, kernel: 0 });
    }
    const entry = listeners.get(name);
    if (m.name === "collector_datagrams_received_total") entry.datagrams += m.value;
    else if (m.name === "collector_datagrams_accepted_total") entry.accepted += m.value;
    else if (m.name === "collector_lines_accepted_total") entry.lines += m.value;
    else if (m.name === "collector_udp_kernel_drops_total") entry.kernel += m.value;
    else if (m.name === "collector_datagrams_dropped_total" ||
             m.name === "collector_lines_dropped_total") {
      entry.dropped[m.labels.reason] = (entry.dropped[m.labels.reason] || 0) + m.value;
    }
  }
  // Both panels are filled after the last fetch, so the page never shows one refreshed
  // and the other not.
  let dead = null;
  const alarms = await api("/v1/alarms?state=dead&limit=10000");
  if (alarms.ok) dead = (await alarms.json()).alarms.length;
  const tbody = document.querySelector("#status-listeners tbody");
  tbody.textContent = "";
  for (const [name, entry] of listeners) {
    const reasons = Object.entries(entry.dropped).filter(([, n]) => n > 0)
      .map(([reason, n]) => `${reason} ${n}`).join(", ") || "0";
    const tr = el("tr");
    tr.append(el("td", clean(name)), el("td", String(entry.datagrams), "num"),
              el("td", String(entry.accepted), "num"), el("td", String(entry.lines), "num"),
              el("td", clean(reasons)), el("td", String(entry.kernel), "num"));
    tbody.append(tr);
  }
  const facts = [
    ["store size", formatBytes(one("collector_store_bytes"))],
    ["partitions", one("collector_store_partitions")],
    ["lines committed", one("collector_store_lines_committed_total")],
    ["queued for the writer", one("collector_store_queue_depth")],
    ["lines dropped (queue full)", one("collector_store_lines_dropped_total")],
    ["writes failing", one("collector_store_writes_failing") ? "yes" : "no"],
    ["followers", one("collector_followers")],
    ["alarms pending", one("collector_alarms_pending") ?? "no alarms configured"],
    ["alarms dead", dead ?? "no alarms configured"],
    ["alarms fired", one("collector_alarms_fired_total") ?? 0],
  ];
  const list = $("status-store");
  list.textContent = "";
  for (const [label, value] of facts) {
    list.append(el("dt", label), el("dd", value == null ? "–" : String(value)));
  }
  $("status-updated").textContent = "updated " + stamp(Date.now() / 1000) +
    " · refreshed every 5 s";
}

function formatBytes(n) {
  if (n == null) return null;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// ---- start -------------------------------------------------------------------------------
formFromUrl();
route();
