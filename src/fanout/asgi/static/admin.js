// fanout's /admin dashboard: asks for the admin key, keeps it in this tab's
// sessionStorage, polls admin/stats once a second with "Authorization: adminkey KEY"
// and draws what changed. Rates are computed here from successive counter values.
"use strict";
(() => {
  const KEY_STORE = "fanout.adminKey";
  const POLL_MS = 1000;
  const TIMEOUT_MS = 5000;
  const WINDOW_S = 120; // sparklines show the last two minutes
  const RECENT_S = 60; // "last min" columns
  const STATS_URL = "admin/stats";

  const CLOSES = {
    1000: "normal", 1001: "going away (shutdown, page left)", 1005: "no status code",
    1006: "ended without a close frame", 1008: "policy: request refused",
    1009: "message too big", 1011: "internal error", 1013: "server or address full",
    4003: "disconnected by the application", 4008: "slow consumer (outbox full)",
    4029: "over its rate limit", none: "no close frame",
  };
  const REFUSALS = {
    origin: "Origin not allowed (HTTP 403)", token: "missing or invalid token (HTTP 403)",
    room: "token does not grant the room (HTTP 403)", revoked: "user or token revoked",
    query: "malformed query (HTTP 400)", full: "max_connections reached (1013)",
    per_ip: "too many from one address (1013)", per_user: "too many for one user (1013)",
  };
  const DROPPED = {
    slow_consumer: "queued for a slow consumer that was closed (4008)",
    closed: "queued for a connection that closed first",
  };
  const BROKER_ERRORS = {
    unavailable: "broker unreachable", timeout: "broker did not answer in time",
    refused: "broker refused the call (not retried)",
  };
  const OTHERS = {
    connections_total: "connections accepted", published: "messages published and stored",
    published_ephemeral: "ephemeral messages published",
    duplicates: "publishes of an id already stored (retries)",
    deliveries: "messages queued for a recipient", deliveries_ephemeral: "ephemeral deliveries",
    replayed: "messages replayed to resuming clients",
    gaps: "offset ranges announced as lost", epoch_resets: "rooms whose history was lost",
    rate_limited: "frames refused for the rate limit",
    rate_limit_closes: "connections closed 4029", paced: "plain clients' frames held back",
    slow_consumer_closes: "connections closed 4008",
    revocations_dropped: "revocations forgotten (max_revocations)",
  };
  const LABELED = ["closes_", "refused_", "dropped_", "broker_errors_"];

  const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const decimals = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const $ = (selector) => document.querySelector(selector);

  const admin = {
    polls: 0, // answers drawn
    refusals: 0,
    stats: null, // the last answer
    samples: [], // [{t, counters}] of totals, the last RECENT_S seconds
    series: { connections: [], rooms: [], publishes: [], deliveries: [] }, // [{t, v}]
    nodeRates: new Map(), // pid -> {t, counters, publishes, deliveries}
    timer: null,
    running: false,
  };
  window.fanoutAdmin = admin;

  // -- the key ---------------------------------------------------------------------------

  let memoryKey = null; // when sessionStorage is unavailable
  function getKey() {
    try { return sessionStorage.getItem(KEY_STORE) || memoryKey; } catch { return memoryKey; }
  }
  function setKey(key) {
    memoryKey = key;
    try {
      if (key === null) sessionStorage.removeItem(KEY_STORE);
      else sessionStorage.setItem(KEY_STORE, key);
    } catch { /* kept in memory only */ }
  }

  function showLogin(refusal) {
    stop();
    $("#dashboard").hidden = true;
    $("#sign-out").hidden = true;
    $("#node").hidden = true;
    $("#broker").hidden = true;
    $("#login").hidden = false;
    const refused = $("#refused");
    refused.textContent = refusal || "";
    refused.hidden = !refusal;
    setStatus("signed-out", "signed out");
    const input = $("#key");
    input.value = "";
    input.focus();
  }

  function showDashboard() {
    $("#login").hidden = true;
    $("#dashboard").hidden = false;
    $("#sign-out").hidden = false;
  }

  // -- polling ---------------------------------------------------------------------------

  function start() {
    if (admin.running) return;
    admin.running = true;
    resetHistory();
    showDashboard();
    setStatus("connecting", "connecting…");
    poll();
  }

  function stop() {
    admin.running = false;
    clearTimeout(admin.timer);
    admin.timer = null;
  }

  function schedule() {
    clearTimeout(admin.timer);
    if (admin.running) admin.timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    admin.timer = null;
    const key = getKey();
    if (!admin.running || key === null) return;
    if (document.hidden) { // nothing to draw: ask again when the tab is shown
      schedule();
      return;
    }
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let answer;
    try {
      answer = await fetch(STATS_URL, {
        headers: { Authorization: `adminkey ${key}` }, cache: "no-store", signal: abort.signal,
      });
      if (answer.status === 401) {
        admin.refusals += 1;
        setKey(null);
        showLogin("refused: wrong key");
        return;
      }
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const stats = await answer.json();
      if (admin.running) draw(stats);
    } catch (error) {
      const why = error.name === "AbortError" ? "no answer within 5 s" : error.message;
      setStatus("unreachable", `unreachable: ${why}`);
    } finally {
      clearTimeout(timeout);
      if (answer === undefined || answer.status !== 401) schedule();
    }
  }

  // -- numbers ---------------------------------------------------------------------------

  function resetHistory() {
    admin.samples = [];
    admin.nodeRates = new Map();
    for (const name of Object.keys(admin.series)) admin.series[name] = [];
  }

  const count = (counters, ...names) => names.reduce((sum, n) => sum + (counters[n] || 0), 0);
  const publishes = (counters) => count(counters, "published", "published_ephemeral");
  const deliveries = (counters) => count(counters, "deliveries", "deliveries_ephemeral");

  // Each process's rates from its own successive reports (a worker's report is its last
  // file: when unchanged since the previous poll, its rates are kept).
  function nodeRates(nodes) {
    const seen = new Map();
    for (const node of nodes) {
      const before = admin.nodeRates.get(node.pid);
      const now = { t: node.time, counters: node.counters, publishes: 0, deliveries: 0 };
      if (before) {
        const dt = node.time - before.t;
        if (dt > 0) {
          now.publishes = Math.max(0, publishes(node.counters) - publishes(before.counters)) / dt;
          now.deliveries = Math.max(0, deliveries(node.counters) - deliveries(before.counters)) / dt;
        } else {
          Object.assign(now, { t: before.t, counters: before.counters,
            publishes: before.publishes, deliveries: before.deliveries });
        }
      }
      now.fresh = before !== undefined;
      seen.set(node.pid, now);
    }
    admin.nodeRates = seen;
    return seen;
  }

  function recentCounters(t) {
    // The oldest sample still within RECENT_S: "last min" is the change since then.
    admin.samples = admin.samples.filter((s) => t - s.t <= RECENT_S);
    return admin.samples.length ? admin.samples[0].counters : null;
  }

  function draw(stats) {
    admin.stats = stats;
    const totals = stats.totals;
    const t = stats.time;
    const rates = nodeRates(stats.nodes);
    const known = [...rates.values()].some((r) => r.fresh);
    const sum = (field) => [...rates.values()].reduce((s, r) => s + r[field], 0);
    const rate = { publishes: known ? sum("publishes") : null,
      deliveries: known ? sum("deliveries") : null };

    const values = { connections: totals.connections, rooms: totals.rooms,
      publishes: rate.publishes, deliveries: rate.deliveries };
    for (const [name, value] of Object.entries(values)) {
      const series = admin.series[name];
      if (value !== null) series.push({ t, v: value });
      while (series.length && t - series[0].t > WINDOW_S) series.shift();
    }
    const earlier = recentCounters(t);
    admin.samples.push({ t, counters: totals.counters });

    drawHeader(stats);
    drawTiles(stats, values);
    const c = totals.counters;
    drawLabeled("closes", "closes_", CLOSES, c, earlier, {}, ["1000", "1001"]);
    drawLabeled("refusals", "refused_", REFUSALS, c, earlier, {});
    drawLabeled("dropped", "dropped_", DROPPED, c, earlier, {});
    drawLabeled("broker-errors", "broker_errors_", BROKER_ERRORS, c, earlier,
      { unavailable: 0, timeout: 0, refused: 0 });
    drawOthers(c, earlier);
    drawNodes(stats, rates);
    admin.polls += 1;
    document.body.dataset.polls = String(admin.polls);
  }

  // -- drawing ---------------------------------------------------------------------------

  function setStatus(state, text) {
    const status = $("#status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function drawHeader(stats) {
    const broker = $("#broker");
    broker.hidden = false;
    broker.dataset.state = stats.broker.healthy ? "ok" : "bad";
    // (A broker's reason names it already.)
    badgeText(broker, stats.broker.healthy ? `broker ${stats.broker.label}: healthy`
      : `broker: ${stats.broker.reason}`, `broker ${stats.broker.label}`);
    const node = $("#node");
    node.hidden = false;
    const n = stats.nodes.length;
    badgeText(node, n > 1 ? `${n} processes · answered by pid ${stats.node}`
      : `pid ${stats.node}`);
    const clock = new Date(stats.time * 1000).toLocaleTimeString();
    setStatus("live", `updated ${clock}`);
  }

  function badgeText(badge, text, title = "") {
    // In a span of its own, so that a long reason ends in an ellipsis (whole in the title).
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = text;
    badge.replaceChildren(span);
    badge.title = title ? `${title}: ${text}` : text;
  }

  function formatRate(value) {
    if (value === null) return "–";
    return value < 10 ? decimals.format(value) : numbers.format(value);
  }

  function formatBytes(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${unit ? decimals.format(value) : numbers.format(value)} ${units[unit]}`;
  }

  function tile(name) {
    const element = $(`[data-testid="tile-${name}"]`);
    return {
      element,
      value: element.querySelector('[data-testid="value"]'),
      sub: element.querySelector('[data-testid="sub"]'),
      spark: element.querySelector("canvas"),
    };
  }

  function drawTiles(stats, values) {
    const totals = stats.totals;
    const c = totals.counters;
    const peak = (name) => Math.max(0, ...admin.series[name].map((p) => p.v));
    const subs = {
      connections: `outbox ${formatBytes(totals.outbox_bytes)} · `
        + `${numbers.format(c.connections_total || 0)} accepted`,
      rooms: `peak ${numbers.format(peak("rooms"))} in the last 2 min`,
      publishes: `${numbers.format(publishes(c))} in all · peak ${formatRate(peak("publishes"))}/s`,
      deliveries: `${numbers.format(deliveries(c))} in all`
        + (values.publishes > 0 && values.deliveries !== null
          ? ` · ×${decimals.format(values.deliveries / values.publishes)} per publish` : ""),
    };
    for (const name of Object.keys(admin.series)) {
      const parts = tile(name);
      const value = values[name];
      const text = name === "publishes" || name === "deliveries" ? formatRate(value)
        : numbers.format(value);
      parts.value.textContent = text;
      parts.element.dataset.value = value === null ? "" : String(value);
      parts.sub.textContent = subs[name];
      sparkline(parts.spark, admin.series[name], stats.time, parts.element);
    }
  }

  function sparkline(canvas, points, now, owner) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, width, height);
    if (points.length < 2) return;
    const color = getComputedStyle(owner).getPropertyValue("--series").trim() || "#2456d3";
    const top = Math.max(1, ...points.map((p) => p.v)) * 1.15;
    const pad = 2 * ratio;
    // The line fills the width as the samples come (at least 10 s across, at most 2 min).
    const span = Math.min(WINDOW_S, Math.max(10, now - points[0].t));
    const x = (t) => width - ((now - t) / span) * width;
    const y = (v) => height - pad - (v / top) * (height - 2 * pad);
    g.beginPath();
    points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
    g.lineWidth = 1.6 * ratio;
    g.lineJoin = "round";
    g.strokeStyle = color;
    g.stroke();
    g.lineTo(x(points[points.length - 1].t), height);
    g.lineTo(x(points[0].t), height);
    g.closePath();
    g.globalAlpha = 0.14;
    g.fillStyle = color;
    g.fill();
    g.globalAlpha = 1;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function fill(tbody, rows, columns, empty) {
    if (!rows.length) {
      const td = cell(empty, "empty");
      td.colSpan = columns;
      const tr = document.createElement("tr");
      tr.append(td);
      tbody.replaceChildren(tr);
      return;
    }
    tbody.replaceChildren(...rows);
  }

  function recent(counters, earlier, name) {
    if (!earlier) return 0;
    return Math.max(0, (counters[name] || 0) - (earlier[name] || 0));
  }

  function drawLabeled(testid, prefix, meanings, counters, earlier, always, calm = []) {
    const found = { ...always };
    for (const [name, value] of Object.entries(counters)) {
      if (name.startsWith(prefix)) found[name.slice(prefix.length)] = value;
    }
    const rows = Object.keys(found)
      .sort((a, b) => found[b] - found[a] || a.localeCompare(b))
      .map((label) => {
        const lately = recent(counters, earlier, prefix + label);
        const tr = document.createElement("tr");
        tr.dataset.key = label;
        if (lately > 0 && !calm.includes(label)) tr.className = "hot";
        tr.append(cell(label, "key"), cell(meanings[label] || "", "meaning"),
          cell(numbers.format(lately), "num recent"), cell(numbers.format(found[label]), "num total"));
        return tr;
      });
    fill($(`[data-testid="${testid}"] tbody`), rows, 4, "none yet");
  }

  function drawOthers(counters, earlier) {
    const names = Object.keys(counters)
      .filter((n) => !LABELED.some((p) => n.startsWith(p)))
      .sort((a, b) => (a in OTHERS ? 0 : 1) - (b in OTHERS ? 0 : 1) || a.localeCompare(b));
    const rows = names.map((name) => {
      const tr = document.createElement("tr");
      tr.dataset.key = name;
      tr.append(cell(name, "key"), cell(OTHERS[name] || "", "meaning"),
        cell(numbers.format(recent(counters, earlier, name)), "num recent"),
        cell(numbers.format(counters[name]), "num total"));
      return tr;
    });
    fill($('[data-testid="counters"] tbody'), rows, 4, "none yet");
  }

  function drawNodes(stats, rates) {
    const card = $("#nodes-card");
    card.hidden = stats.nodes.length < 2;
    if (card.hidden) return;
    const rows = stats.nodes.map((node) => {
      const r = rates.get(node.pid);
      const tr = document.createElement("tr");
      tr.dataset.pid = String(node.pid);
      if (node.pid === stats.node) tr.className = "self";
      const age = Math.max(0, stats.time - node.time);
      tr.append(cell(String(node.pid), "key"), cell(numbers.format(node.connections), "num"),
        cell(numbers.format(node.rooms), "num"), cell(formatBytes(node.outbox_bytes), "num"),
        cell(r.fresh ? formatRate(r.publishes) : "–", "num"),
        cell(r.fresh ? formatRate(r.deliveries) : "–", "num"),
        cell(age < 1 ? "now" : `${decimals.format(age)} s ago`, "num"));
      return tr;
    });
    fill($('[data-testid="nodes"] tbody'), rows, 7, "");
  }

  // -- wiring ----------------------------------------------------------------------------

  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key").value.trim();
    if (!key) return;
    if (!/^[\x21-\x7e]+$/.test(key)) { // cannot be sent in a header: not the key
      showLogin("refused: wrong key");
      return;
    }
    setKey(key);
    $("#key").value = "";
    start();
  });
  $("#sign-out").addEventListener("click", () => {
    setKey(null);
    showLogin("");
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && admin.running && admin.timer !== null) {
      clearTimeout(admin.timer);
      poll();
    }
  });
  window.addEventListener("resize", () => {
    if (admin.stats) drawTiles(admin.stats, Object.fromEntries(Object.entries(admin.series)
      .map(([name, s]) => [name, s.length ? s[s.length - 1].v : null])));
  });

  if (getKey() !== null) start();
  else showLogin("");
})();
