// The trader's read-only page: fetches the JSON API, redraws, and fetches again when the
// server's event stream says something changed (fills, orders, trading state) or every
// REFRESH_MS for prices. Everything is written with textContent: nothing from the API is
// ever parsed as HTML.
"use strict";

const REFRESH_MS = 15000;
const AUDIT_SHOWN = 12;
const DEBOUNCE_MS = 250;
const ZONE = "America/New_York";
const SVG = "http://www.w3.org/2000/svg";

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const clock = new Intl.DateTimeFormat("en-US", {
  timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const day = new Intl.DateTimeFormat("en-US", { timeZone: ZONE, month: "short", day: "numeric" });

const $ = (id) => document.getElementById(id);

function fmtMoney(text) {
  return text === null || text === undefined ? "n/a" : money.format(Number(text));
}

function signed(text) {
  if (text === null || text === undefined) return "n/a";
  const n = Number(text);
  return (n > 0 ? "+" : "") + money.format(n);
}

function pct(text) {
  if (text === null || text === undefined) return "";
  const n = Number(text);
  return (n > 0 ? "+" : "") + n.toFixed(2) + "%";
}

function tone(el, text) {
  const n = Number(text);
  el.classList.toggle("up", text !== null && n > 0);
  el.classList.toggle("down", text !== null && n < 0);
}

function time(iso) {
  return iso ? clock.format(new Date(iso)) : "n/a";
}

function when(iso) {
  return day.format(new Date(iso)) + " " + time(iso);
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "n/a";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillRows(tbody, rows, columns, emptyText, key) {
  const trs = rows.map((row) => {
    const tr = document.createElement("tr");
    if (key) tr.dataset.key = key(row);
    for (const [value, className] of columns(row)) tr.append(cell(value, className));
    return tr;
  });
  if (!trs.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = tbody.closest("table").querySelectorAll("th").length;
    tr.append(td);
    trs.push(tr);
  }
  tbody.replaceChildren(...trs);
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (response.status === 401) {
    location.reload(); // the server answers with its login form
    throw new Error("the token is no longer accepted");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(path + ": " + (body.error || response.status));
  return body;
}

function renderStatus(s) {
  const badge = $("state");
  badge.textContent = s.state;
  badge.className = "badge " + s.state;
  const reason = s.state_reason ? " · " + s.state_reason : "";
  const locked = s.loss_limit_locked ? " · loss-limit lock" : "";
  const flatten = s.flatten_running ? " · flatten running" : "";
  $("state-detail").textContent =
    "by " + s.state_actor + reason + " · since " + when(s.state_since) + locked + flatten;
  $("mode").textContent = s.mode;
  $("market").textContent = s.market_open ? "market open" : "market closed";
  $("equity").textContent = fmtMoney(s.equity);
  const pnl = $("day-pnl");
  pnl.textContent = signed(s.day_pnl) + (s.day_pnl_pct === null ? "" : " (" + pct(s.day_pnl_pct) + ")");
  tone(pnl, s.day_pnl);
  $("cash").textContent = fmtMoney(s.cash);
  $("exposure").textContent = fmtMoney(s.gross_exposure);
  const health = [
    ["Feed", (s.feed.connected ? "connected" : "down") + " · last message " +
      ago(s.feed.last_message_age_s) + " ago · " + s.feed.detail],
    ["Broker", s.broker.name + " · " + (s.broker.ok ? "ok" : "failing: " + s.broker.last_error) +
      (s.broker.round_trip_ms === null ? "" : " · " + s.broker.round_trip_ms.toFixed(0) + " ms")],
    ["Loop lag p99", s.loop_lag_p99_ms === null ? "n/a" : s.loop_lag_p99_ms.toFixed(1) + " ms"],
    ["Heartbeat", time(s.last_heartbeat)],
    ["Uptime", ago(s.uptime_s)],
  ];
  $("health").replaceChildren(...health.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    return [dt, dd];
  }));
}

function renderPositions(rows) {
  $("positions-count").textContent = "(" + rows.length + ")";
  fillRows($("positions"), rows, (p) => [
    [p.symbol, "symbol"],
    [p.qty, "num qty"],
    [fmtMoney(p.avg_price), "num"],
    [fmtMoney(p.last_price), "num"],
    [fmtMoney(p.market_value), "num"],
    [signed(p.unrealized_pnl) + (p.unrealized_pct === null ? "" : " " + pct(p.unrealized_pct)),
      "num " + (Number(p.unrealized_pnl) >= 0 ? "up" : "down")],
  ], "No open positions", (p) => p.symbol);
}

function renderOrders(rows) {
  $("orders-count").textContent = "(" + rows.length + ")";
  fillRows($("orders"), rows, (o) => [
    [o.symbol, "symbol"],
    [o.side, o.side === "buy" ? "up" : "down"],
    [o.filled_qty + " / " + o.qty, "num"],
    [o.order_type, ""],
    [o.limit_price === null ? "" : fmtMoney(o.limit_price), "num"],
    [o.status, ""],
    [ago(o.age_s), "num"],
  ], "No open orders", (o) => o.client_order_id);
}

function renderTrades(rows) {
  $("trades-count").textContent = "(" + rows.length + ")";
  fillRows($("trades"), rows, (t) => [
    [time(t.ts), ""],
    [t.symbol, "symbol"],
    [t.side, t.side === "buy" ? "up" : "down"],
    [t.qty, "num qty"],
    [fmtMoney(t.price), "num"],
    [fmtMoney(t.commission), "num"],
    [t.closing ? signed(t.realized_pnl) : "", "num " + (Number(t.realized_pnl) >= 0 ? "up" : "down")],
  ], "No trades today", (t) => t.client_order_id + "@" + t.ts);
}

function renderAudit(rows) {
  const shown = rows.slice(0, AUDIT_SHOWN);
  fillRows($("audit"), shown, (a) => [
    [when(a.ts), ""],
    [a.actor, ""],
    [a.command + (a.args ? " " + a.args : ""), ""],
    [(a.ok ? "✓ " : "✗ ") + a.result, a.ok ? "" : "down"],
  ], "No commands yet", (a) => a.ts + a.actor + a.command);
}

let days = 1;

function renderCurve(points) {
  const svg = $("curve");
  const values = points.map((p) => Number(p.equity));
  if (values.length < 2) {
    svg.replaceChildren();
    $("curve-caption").textContent = "Not enough points yet.";
    return;
  }
  const times = points.map((p) => Date.parse(p.ts));
  const [w, h, pad] = [600, 160, 8];
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1, t0 = times[0], tspan = times[times.length - 1] - t0 || 1;
  const xy = values.map((v, i) => [
    ((times[i] - t0) / tspan) * w,
    h - pad - ((v - lo) / span) * (h - 2 * pad),
  ]);
  const line = xy.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1)).join(" ");
  const make = (name, attrs) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  };
  const startY = xy[0][1].toFixed(1);
  svg.replaceChildren(
    make("path", { class: "area", d: line + " L" + w + " " + h + " L0 " + h + " Z" }),
    make("line", { class: "base", x1: 0, x2: w, y1: startY, y2: startY,
      "vector-effect": "non-scaling-stroke" }),
    make("path", { class: "line", d: line, "vector-effect": "non-scaling-stroke" }),
  );
  $("curve-caption").textContent =
    "low " + money.format(lo) + " · high " + money.format(hi) + " · now " +
    money.format(values[values.length - 1]) + " · " + when(points[0].ts) + " – " +
    when(points[points.length - 1].ts);
}

let running = null;
let again = false;

async function refresh() {
  if (running) { again = true; return running; }
  running = (async () => {
    try {
      const [status, positions, orders, trades, equity, audit] = await Promise.all([
        getJSON("/api/status"), getJSON("/api/positions"), getJSON("/api/orders"),
        getJSON("/api/trades"), getJSON("/api/equity?days=" + days),
        getJSON("/api/audit?limit=" + AUDIT_SHOWN),
      ]);
      renderStatus(status);
      renderPositions(positions);
      renderOrders(orders);
      renderTrades(trades);
      renderCurve([...equity, { ts: status.now, equity: status.equity }]);
      renderAudit(audit);
      $("error").hidden = true;
      $("updated").textContent = time(status.now);
      document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    } catch (error) {
      $("error").textContent = "Could not update: " + error.message;
      $("error").hidden = false;
    } finally {
      running = null;
    }
  })();
  await running;
  if (again) { again = false; await refresh(); }
}

let pending = null;
function soon() {
  clearTimeout(pending);
  pending = setTimeout(refresh, DEBOUNCE_MS);
}

function listen() {
  const live = $("live");
  const events = new EventSource("/api/events");
  events.addEventListener("hello", () => { live.textContent = "live"; soon(); });
  events.addEventListener("change", soon);
  events.onerror = () => { live.textContent = "reconnecting…"; };
}

function ranges() {
  for (const button of $("range").querySelectorAll("button")) {
    button.addEventListener("click", () => {
      days = Number(button.dataset.days);
      for (const b of $("range").querySelectorAll("button")) {
        b.setAttribute("aria-pressed", String(b === button));
      }
      refresh();
    });
  }
}

ranges();
refresh();
listen();
setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
