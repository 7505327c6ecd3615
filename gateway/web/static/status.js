// The status page: polls api/status and draws it. No framework, no build step.
"use strict";

const POLL_MS = 2000;
const POINTS = 90;            // chart history: 3 minutes at one poll every 2 s
const COLORS = { mqtt: "#2f6fdb", mqttsn: "#d9822b", coap: "#12805c", http: "#7a5af8" };
const history = {};           // protocol -> [messages/s, ...]
let last = null;              // previous document, for rates
// Next to this page, without the user:password@ a URL may carry (fetch refuses those;
// the browser sends the credentials it logged in with).
const STATUS_URL = location.origin + location.pathname.replace(/[^/]*$/, "") + "api/status";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

function color(protocol) { return COLORS[protocol] || "#667085"; }

function since(seconds) {
  if (seconds == null) return "";
  const date = new Date(seconds * 1000);
  return date.toLocaleString();
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + s + "s";
}

function replaceRows(table, rows) {
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows);
}

function summary(doc) {
  const cards = [
    [doc.clients.connected, "clients connected"],
    [doc.clients.offline, "sessions offline"],
    [doc.totals.subscriptions, "subscriptions"],
    [doc.totals.retained, "retained messages"],
  ];
  document.getElementById("summary").replaceChildren(...cards.map(
    ([value, label]) => el("div", { class: "card" }, el("b", {}, value), el("span", {}, label))));
}

function clients(doc) {
  const c = doc.clients;
  document.getElementById("client-count").textContent =
    c.rows.length < c.connected ? `(${c.rows.length} of ${c.connected} shown)` : `(${c.connected})`;
  replaceRows(document.getElementById("clients"), c.rows.map(row => {
    const filters = row.subscriptions.join(", ") +
      (row.subscription_count > row.subscriptions.length ? ` … (${row.subscription_count})` : "");
    return el("tr", { "data-protocol": row.protocol },
      el("td", {}, el("code", {}, row.id)),
      el("td", {}, el("span", { class: "proto", style: `background:${color(row.protocol)}` }, row.protocol)),
      el("td", {}, row.transport), el("td", {}, row.address), el("td", {}, since(row.connected_since)),
      el("td", {}, filters), el("td", { class: "num" }, row.queued + row.inflight));
  }));
}

function topics(doc) {
  const rows = doc.topics.map(t => el("tr", {},
    el("td", {}, el("code", {}, t.topic)), el("td", { class: "num" }, t.rate.toFixed(1)),
    el("td", { class: "num" }, t.messages)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { class: "muted", colspan: "3" },
    "Counting starts now; rates appear with the next updates.")));
  replaceRows(document.getElementById("topics"), rows);
}

function serial(doc) {
  const section = document.getElementById("serial-section");
  section.hidden = !doc.serial.length;
  document.getElementById("serial").replaceChildren(...doc.serial.map(line => {
    const radios = line.radios.map(r => el("tr", {},
      el("td", {}, el("code", {}, r.address)), el("td", {}, r.address16 || ""),
      el("td", {}, r.client_id || el("span", { class: "muted" }, "not connected")),
      el("td", {}, r.asleep ? "asleep" : (r.client_id ? "active" : "")),
      el("td", {}, since(r.last_heard))));
    return el("div", { class: "serial-line" },
      el("p", {}, el("code", {}, line.device), ` ${line.framing}, ${line.baud} baud — `,
        el("span", { class: line.up ? "up" : "down" }, line.up ? "open" : "down"),
        ` · opened ${line.opens}× · ${line.frames_dropped} frames dropped`),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Radio", "16-bit", "Client id", "State",
        "Last heard"].map(h => el("th", {}, h)))), el("tbody", {}, ...radios)));
  }));
}

const MIN_SPAN = 0.5;         // seconds of server time a rate is measured over, at least

function chart(doc) {
  if (last) {
    const span = doc.time - last.time;
    for (const [name, now] of Object.entries(doc.protocols)) {
      const before = last.protocols[name] || { received: 0, sent: 0 };
      const rate = (now.received + now.sent - before.received - before.sent) / span;
      (history[name] = history[name] || []).push(Math.max(rate, 0));
      if (history[name].length > POINTS) history[name].shift();
    }
  }
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 30;
  ctx.clearRect(0, 0, w, h);
  const peak = Math.max(1, ...Object.values(history).flat());
  ctx.strokeStyle = "#e4e7ec"; ctx.fillStyle = "#667085"; ctx.font = "12px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = h - pad - (h - 2 * pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 5, y); ctx.stroke();
    ctx.fillText((peak * i / 4).toFixed(peak < 8 ? 1 : 0), 2, y + 4);
  }
  for (const [name, points] of Object.entries(history)) {
    ctx.strokeStyle = color(name); ctx.lineWidth = 2; ctx.beginPath();
    points.forEach((v, i) => {
      const x = pad + (w - pad - 5) * i / (POINTS - 1), y = h - pad - (h - 2 * pad) * v / peak;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
  document.getElementById("legend").replaceChildren(...Object.keys(doc.protocols).map(name => {
    const points = history[name] || [];
    const current = points.length ? points[points.length - 1].toFixed(1) : "–";
    return el("span", {}, el("i", { style: `background:${color(name)}` }), `${name} ${current}/s`);
  }));
}

function show(doc) {
  document.getElementById("version").textContent = "version " + doc.version;
  document.getElementById("uptime").textContent = "up " + duration(doc.uptime);
  summary(doc); clients(doc); topics(doc); serial(doc);
  if (!last || doc.time - last.time >= MIN_SPAN) { chart(doc); last = doc; }
}

async function poll() {
  const state = document.getElementById("state");
  try {
    const response = await fetch(STATUS_URL, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    show(await response.json());
    state.textContent = "live"; state.className = "state ok";
    document.body.dataset.loaded = "true";
  } catch (error) {
    state.textContent = "unreachable: " + error.message; state.className = "state bad";
  }
  setTimeout(poll, POLL_MS);
}

poll();
