// The live page: frames from /events (Server-Sent Events), drawn with textContent only, so
// nothing from a transaction is ever read as HTML.
"use strict";

const ROLE_COLORS = { input: "--input", legit: "--legit", fraud: "--fraud", "dead-letter": "--dead-letter" };
// No frame for this long (or 2 refreshes and a second, if longer): the reader is stuck, for
// example waiting for a broker that went away.
const STALE_SECONDS = 3;
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const number = (n) => n.toLocaleString("en-US");
const rate = (r) => r.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const percent = (share) => (share === null ? "–" : `${(100 * share).toFixed(1)}%`);

let lastFrame = null;
let lastFrameAt = 0;
let source = null;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  td.title = text;
  if (className) td.className = className;
  return td;
}

function fillRows(tbodyParent, rows, columns, emptyText) {
  const tbody = tbodyParent.querySelector("tbody");
  const trs = rows.map((row) => {
    const tr = document.createElement("tr");
    row.forEach((text, i) => tr.appendChild(cell(String(text), columns[i])));
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "none");
    td.colSpan = columns.length;
    tr.appendChild(td);
    trs.push(tr);
  }
  tbody.replaceChildren(...trs);
}

function setPill(id, state, text) {
  const pill = $(id);
  pill.dataset.state = state;
  pill.textContent = text;
}

function render(frame) {
  $("broker-url").textContent = frame.broker;
  $("group").textContent = frame.group;
  $("lag-group").textContent = frame.group;
  $("updated").textContent = `updated ${frame.updated_at}`;
  for (const card of document.querySelectorAll(".card[data-role]")) {
    const role = card.dataset.role;
    const topic = frame.topics[role] || "";
    card.querySelector(".topic").textContent =
      frame.missing_topics.includes(topic) ? `${topic} (missing)` : topic;
    card.querySelector(".rate .value").textContent = rate(frame.rates[role] || 0);
    card.querySelector(".total span").textContent = number(frame.totals[role] || 0);
  }
  $("share-window-label").textContent = `last ${frame.window_seconds} s`;
  $("share-window").textContent = percent(frame.fraud_share_window);
  $("share-total").textContent = percent(frame.fraud_share_total);

  fillRows($("rules"), frame.fraud_by_rule.map((r) => [r.rules, rate(r.rate), number(r.total), percent(r.share)]),
    ["", "num", "num", "num"], "none");
  $("dead-total").textContent = number(frame.dead_letters_total);
  fillRows($("dead-letters"), frame.dead_letters.map(([reason, count]) => [reason, number(count)]),
    ["", "num"], "none");
  $("lag-total").textContent = number(frame.lag_total);
  fillRows($("lag"), frame.lag.map((p) => [p.partition, number(p.end_offset),
    p.committed === null ? "none" : number(p.committed), number(p.end_offset - (p.committed || 0))]),
    ["num", "num", "num", "num"], "no partitions yet");
  $("lag-error").hidden = !frame.lag_error;
  $("lag-error").textContent = frame.lag_error || "";
  fillRows($("latest-fraud"), frame.latest_fraud.map((f) => [f.timestamp, f.source, f.target,
    `${f.amount} ${f.currency}`.trim(), f.rules, f.id]), ["", "", "", "num", "", ""], "none yet");
  renderQuality(frame.quality);
  drawChart(frame);
}

// Precision and recall by rule: only once labelled records were read (quality is null before).
function renderQuality(quality) {
  $("quality").hidden = !quality;
  if (!quality) return;
  fillRows($("quality-rules"), [...quality.rules, quality.total].map((r) => [r.rule, number(r.alerts),
    percent(r.precision), percent(r.recall)]), ["", "num", "num", "num"], "none");
  fillRows($("quality-scenarios"), quality.scenarios.map((s) => [s.scenario, number(s.labelled),
    number(s.caught), number(s.missed)]), ["", "num", "num", "num"], "none");
}

// A round step for the axis: 1, 2 or 5 times a power of ten, at least `rough`.
function niceStep(rough) {
  const power = 10 ** Math.floor(Math.log10(rough));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= rough);
}

function drawChart(frame) {
  const svg = $("chart");
  const width = Math.max(svg.clientWidth, 300);
  const height = 220;
  const pad = { left: 48, right: 8, top: 10, bottom: 22 };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const history = frame.history;
  const end = history.length ? history[history.length - 1][0] : 0;
  const span = 300;
  const peak = Math.max(1, ...history.flatMap((row) => row.slice(1)));
  const step = niceStep(peak / 4);
  const max = Math.ceil(peak / step) * step;
  const x = (t) => pad.left + (width - pad.left - pad.right) * (1 - (end - t) / span);
  const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max);
  const parts = [];
  const add = (name, attrs, text) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    parts.push(el);
  };
  for (let tick = 0; tick <= max + step / 2; tick += step) {
    add("line", { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: "grid-line" });
    add("text", { x: pad.left - 6, y: y(tick) + 4, "text-anchor": "end" }, number(tick));
  }
  for (const ago of [300, 240, 180, 120, 60, 0]) {
    add("text", { x: x(end - ago), y: height - 6, "text-anchor": ago === 300 ? "start" : ago === 0 ? "end" : "middle" },
      ago === 0 ? "now" : `-${ago / 60} min`);
  }
  frame.roles.forEach((role, i) => {
    const points = history.map((row) => `${x(row[0]).toFixed(1)},${y(row[i + 1]).toFixed(1)}`).join(" ");
    add("polyline", { points, stroke: `var(${ROLE_COLORS[role]})`, "data-role": role });
  });
  svg.replaceChildren(...parts);
  const legend = $("legend");
  if (!legend.childElementCount) {
    legend.replaceChildren(...frame.roles.map((role) => {
      const span = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = `var(${ROLE_COLORS[role]})`;
      span.append(swatch, role);
      return span;
    }));
  }
}

// The broker's state and the banner, from the last frame, its age and the connection.
function showState() {
  const banner = $("banner");
  const connected = source && source.readyState === EventSource.OPEN;
  const age = (performance.now() - lastFrameAt) / 1000;
  let problem = "";
  if (!connected) {
    setPill("connection", "lost", "page: reconnecting");
    problem = "The dashboard's server is not answering; reconnecting…";
  } else {
    setPill("connection", "live", "page: live");
  }
  if (!lastFrame) {
    setPill("broker-state", "waiting", "broker: waiting");
  } else if (!lastFrame.broker_up) {
    setPill("broker-state", "down", "broker: down");
    problem = problem || lastFrame.status || "The broker is not answering.";
  } else if (connected && age > Math.max(STALE_SECONDS, 2 * lastFrame.refresh_seconds + 1)) {
    setPill("broker-state", "waiting", "broker: no answer yet");
    problem = `No new data for ${Math.round(age)} s: the reader is waiting for the broker.`;
  } else {
    setPill("broker-state", "up", "broker: up");
  }
  banner.hidden = !problem;
  banner.textContent = problem;
}

function connect() {
  source = new EventSource("/events");
  source.addEventListener("frame", (event) => {
    lastFrame = JSON.parse(event.data);
    lastFrameAt = performance.now();
    render(lastFrame);
    showState();
  });
  source.addEventListener("tick", showState);
  source.addEventListener("open", showState);
  source.addEventListener("error", () => {
    showState();
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an error page instead of the stream): start over.
      setTimeout(connect, 1000);
    }
  });
}

connect();
setInterval(showState, 1000);
