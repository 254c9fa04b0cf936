// The dashboard: a table of every strategy, paginated on the server, kept live by
// the event stream (/api/events). No framework, no CDN: this file is all of it.
"use strict";

const $ = (id) => document.getElementById(id);
const STATES = ["RUNNING", "STARTING", "WAITING", "PAUSED", "BACKOFF", "FAILED", "BLOCKED",
  "DISABLED", "STANDBY", "STOPPING", "STOPPED", "FINISHED", "CREATED"];
const view = { offset: 0, limit: 100, state: "", total: 0, timer: null, lastLoad: 0, loading: false, again: false };
const detailId = location.pathname.startsWith("/strategies/")
  ? decodeURIComponent(location.pathname.slice("/strategies/".length)) : null;

// -- the token (kept in this tab only) ------------------------------------------------
function token() { return sessionStorage.getItem("qsm-token") || ""; }
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}
$("token-button").onclick = () => { $("token-box").hidden = !$("token-box").hidden; $("token").focus(); };
$("token-box").onsubmit = (event) => {
  event.preventDefault();
  sessionStorage.setItem("qsm-token", $("token").value.trim());
  $("token").value = "";
  $("token-box").hidden = true;
  start();
};

async function api(path, options) {
  const response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    if (response.status === 401) $("token-box").hidden = false;
    throw new Error((body && body.error) || response.status + " " + response.statusText);
  }
  return body;
}

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error ? String(error.message || error) : "";
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child == null ? "" : child);
  return node;
}

function badge(state) { return el("span", { className: "state state-" + state, textContent: state }); }

function age(seconds) {
  if (seconds == null) return "-";
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function exchangeTime(iso, zone) {
  // The server sends the time in the exchange's zone, with its offset.
  if (!iso) return "-";
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.exec(iso);
  const shown = m ? m[1] + " " + m[2] + " " + (m[3] === "Z" ? "+00:00" : m[3]) : iso;
  return shown + (zone ? " " + zone : "");
}

// -- the table --------------------------------------------------------------------------
function query() {
  const p = new URLSearchParams({ offset: view.offset, limit: view.limit });
  if (view.state) p.set("state", view.state);
  for (const name of ["engine", "user", "symbol", "account"]) if ($(name).value.trim()) p.set(name, $(name).value.trim());
  if ($("search").value.trim()) p.set("q", $("search").value.trim());
  return p;
}

async function load() {
  if (view.loading) { view.again = true; return; }
  view.loading = true;
  view.lastLoad = Date.now();
  try {
    const page = await api("/api/strategies?" + query());
    if (page.total > 0 && view.offset >= page.total) {  // the set shrank under us
      view.offset = Math.floor((page.total - 1) / view.limit) * view.limit;
      view.loading = false;
      return load();
    }
    render(page);
    showError(null);
  } catch (error) {
    showError(error);
  } finally {
    view.loading = false;
    if (view.again) { view.again = false; schedule(); }
  }
}

// Coalesce bursts of events into at most one reload per 400 ms.
function schedule() {
  if (view.timer) return;
  const wait = Math.max(0, 400 - (Date.now() - view.lastLoad));
  view.timer = setTimeout(() => { view.timer = null; load(); }, wait);
}

function render(page) {
  view.total = page.total;
  view.loadedAt = Date.now();
  const counts = $("counts");
  counts.replaceChildren();
  const all = Object.values(page.counts).reduce((a, b) => a + b, 0);
  counts.append(chip("", "all", all));
  for (const state of STATES) if (page.counts[state]) counts.append(chip(state, state, page.counts[state]));
  for (const state of Object.keys(page.counts)) if (!STATES.includes(state)) counts.append(chip(state, state, page.counts[state]));
  const engine = $("engine");
  const chosen = engine.value;
  engine.replaceChildren(el("option", { value: "", textContent: "every engine" }),
    ...page.engines.map((name) => el("option", { value: name, textContent: name })));
  engine.value = chosen;
  const rows = page.items.map(row);
  $("rows").replaceChildren(...rows);
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.items.length;
  $("range").textContent = `${first}-${last} of ${page.total}`;
  $("prev").disabled = $("first").disabled = page.offset === 0;
  $("next").disabled = $("last").disabled = last >= page.total;
  if (!performance.getEntriesByName("qsm-first-render").length) performance.mark("qsm-first-render");
}

function chip(state, label, n) {
  const node = el("button", { type: "button", className: "chip" + (view.state === state ? " active" : "") });
  node.dataset.state = state;
  node.append(state ? badge(label) : label, " ", el("b", { textContent: String(n) }));
  node.onclick = () => { view.state = view.state === state ? "" : state; view.offset = 0; load(); };
  return node;
}

function row(s) {
  const tr = el("tr");
  tr.dataset.id = s.id;
  const link = el("a", { href: "/strategies/" + encodeURIComponent(s.id), textContent: s.id });
  const owner = s.owner ? s.owner + (s.host ? " @ " + s.host : "") : (s.elsewhere ? "another orchestrator" : "-");
  const next = s.next_transition ? s.next_transition + " " + exchangeTime(s.next_transition_at, s.zone) : "-";
  const snap = el("td", { className: "num snapshot", textContent: age(s.snapshot_age_seconds) });
  snap.dataset.age = s.snapshot_age_seconds == null ? "" : s.snapshot_age_seconds;
  const state = el("td", { className: "state-cell" }, badge(s.state));
  if (s.reason) state.title = s.reason;
  tr.append(
    el("td", { className: "id" }, link),
    state,
    el("td", { textContent: s.engine || "-" }),
    el("td", { textContent: s.symbol || "-" }),
    el("td", { textContent: owner }),
    el("td", { className: "num", textContent: String(s.restarts) }),
    snap,
    el("td", { textContent: next }),
  );
  return tr;
}

// Ages move on between reloads.
setInterval(() => {
  if (!view.loadedAt) return;
  const passed = (Date.now() - view.loadedAt) / 1000;
  for (const cell of document.querySelectorAll("td.snapshot")) {
    if (cell.dataset.age !== "") cell.textContent = age(Number(cell.dataset.age) + passed);
  }
}, 5000);

function onStatus(rows) {
  // Show the new state at once where the row is on screen, then reload the page
  // (counts, filters and order may have changed).
  for (const s of rows) {
    const tr = document.querySelector(`tr[data-id="${CSS.escape(s.id)}"]`);
    if (tr) tr.querySelector(".state-cell").replaceChildren(badge(s.state));
  }
  schedule();
}

// -- the event stream (fetch, so the token can go in a header) ---------------------------
let stream = null;
async function follow(handlers) {
  if (stream) stream.abort();
  const controller = new AbortController();
  stream = controller;
  while (!controller.signal.aborted) {
    try {
      const response = await fetch("/api/events", { headers: headers(), signal: controller.signal });
      if (!response.ok) throw new Error("events: " + response.status);
      live(true);
      handlers.connected && handlers.connected();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (data.length && handlers[name]) handlers[name](JSON.parse(data.join("\n")));
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    live(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function live(on) {
  $("live").className = "live " + (on ? "on" : "off");
  $("live").textContent = on ? "live" : "reconnecting";
}

// -- one strategy -------------------------------------------------------------------------
async function loadDetail() {
  try {
    const d = await api("/api/strategies/" + encodeURIComponent(detailId));
    renderDetail(d);
    showError(null);
  } catch (error) {
    showError(error);
  }
}

function renderDetail(d) {
  $("d-title").textContent = d.id;
  const s = d.status || {};
  const dl = $("d-status");
  dl.replaceChildren();
  const fields = [
    ["state", s.state ? badge(s.state) : "-"], ["reason", s.reason || "-"], ["engine", s.engine || "-"],
    ["enabled", s.enabled == null ? "-" : String(s.enabled)], ["owner", s.owner || (s.elsewhere ? "another orchestrator" : "-")],
    ["host", s.host || "-"], ["lease epoch", s.epoch == null ? "-" : String(s.epoch)],
    ["restarts", String(s.restarts == null ? "-" : s.restarts)], ["starts", String(s.starts == null ? "-" : s.starts)],
    ["last snapshot", s.last_snapshot_seq == null ? "-" : "#" + s.last_snapshot_seq + ", " + age(s.snapshot_age_seconds)],
    ["next transition", s.next_transition ? s.next_transition + " " + exchangeTime(s.next_transition_at, s.zone) : "-"],
    ["calendar", s.calendar || "-"],
  ];
  for (const [name, value] of fields) dl.append(el("dt", { textContent: name }), el("dd", {}, value));
  $("d-document").textContent = d.document ? JSON.stringify(d.document, null, 2) : "(document removed)";
  const events = $("d-events");
  events.replaceChildren(...d.events.map(eventItem));
  if (!d.events.length) events.append(el("li", { className: "muted", textContent: "no events since this orchestrator started" }));
  renderSnapshots(d.snapshots);
}

function eventItem(e) {
  return el("li", {}, el("span", { className: "muted", textContent: e.time.replace("T", " ").slice(0, 19) + " " }),
    el("b", { textContent: e.kind + " " }), e.detail);
}

function renderSnapshots(snapshots) {
  const table = $("d-snapshots");
  table.replaceChildren(el("tr", {}, el("th", { textContent: "seq" }), el("th", { textContent: "taken" }),
    el("th", { className: "num", textContent: "bytes" })));
  for (const s of snapshots) {
    table.append(el("tr", {}, el("td", { textContent: "#" + s.seq + (s.error ? " (unreadable)" : "") }),
      el("td", { textContent: s.taken_at.replace("T", " ").slice(0, 19) }),
      el("td", { className: "num", textContent: String(s.bytes) })));
  }
  // The timeline: one tick per kept snapshot, its height the snapshot's size.
  const box = $("d-timeline");
  box.replaceChildren();
  if (!snapshots.length) { box.textContent = "no snapshot yet"; return; }
  const times = snapshots.map((s) => Date.parse(s.taken_at));
  const lo = Math.min(...times), hi = Math.max(...times), span = Math.max(hi - lo, 1);
  const big = Math.max(...snapshots.map((s) => s.bytes), 1);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 1000 60");
  svg.setAttribute("preserveAspectRatio", "none");
  snapshots.forEach((s, i) => {
    const x = snapshots.length === 1 ? 500 : 10 + 980 * (times[i] - lo) / span;
    const h = 8 + 48 * s.bytes / big;
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", x - 3); bar.setAttribute("width", 6); bar.setAttribute("y", 58 - h); bar.setAttribute("height", h);
    bar.setAttribute("fill", s.error ? "#b00020" : "#2f6fd6");
    const title = document.createElementNS(ns, "title");
    title.textContent = `#${s.seq} ${s.taken_at} ${s.bytes} bytes`;
    bar.append(title);
    svg.append(bar);
  });
  box.append(svg);
}

for (const button of document.querySelectorAll("[data-action]")) {
  button.onclick = async () => {
    const action = button.dataset.action;
    $("d-result").textContent = action + "...";
    try {
      const r = await api(`/api/strategies/${encodeURIComponent(detailId)}/${action}`, { method: "POST", headers: headers() });
      $("d-result").textContent = r.action;
      setTimeout(loadDetail, 300);
    } catch (error) {
      $("d-result").textContent = String(error.message || error);
    }
  };
}

// -- start ----------------------------------------------------------------------------------
function start() {
  if (detailId) {
    $("detail").hidden = false;
    document.title = detailId + " - strategy-manager";
    loadDetail();
    follow({
      connected: loadDetail,
      transition: (e) => { if (e.strategy_id === detailId) loadDetail(); },
      status: (rows) => { if (rows.some((r) => r.id === detailId)) loadDetail(); },
      reset: loadDetail,
    });
    return;
  }
  $("fleet").hidden = false;
  load();
  follow({ connected: schedule, status: onStatus, reset: schedule });
}

let typing = null;
for (const id of ["search", "user", "symbol", "account"]) {
  $(id).addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.offset = 0; load(); }, 250);
  });
}
$("engine").onchange = () => { view.offset = 0; load(); };
$("clear").onclick = () => {
  for (const id of ["search", "user", "symbol", "account", "engine"]) $(id).value = "";
  view.state = ""; view.offset = 0; load();
};
$("size").onchange = () => { view.limit = Number($("size").value); view.offset = 0; load(); };
$("first").onclick = () => { view.offset = 0; load(); };
$("prev").onclick = () => { view.offset = Math.max(0, view.offset - view.limit); load(); };
$("next").onclick = () => { if (view.offset + view.limit < view.total) { view.offset += view.limit; load(); } };
$("last").onclick = () => { view.offset = Math.max(0, Math.floor((view.total - 1) / view.limit) * view.limit); load(); };
start();
