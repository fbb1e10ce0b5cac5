// The Claude Code Cluster dashboard: plain JS, no build step, no CDN. It reads the serve
// API, renders with DOM nodes (never innerHTML: every string from the state repo is data),
// and updates live from /api/events, or by polling /api/cluster/status when a bearer token
// is set (EventSource cannot send headers) or the stream fails.
"use strict";

(() => {
  const POLL_MS = 2000;
  const TOKEN_KEY = "ccc-dashboard-token";
  // Set once per page load: a test (or a person) can tell a live update from a reload.
  window.dashboardLoadId = `${Date.now()}-${Math.random().toString(36).slice(2)}`;

  const ui = {
    filters: { state: "", specialty: "", label: "" },
    selected: null,       // the task id whose detail panel is open
    lastSignature: null,  // what the last rendered status said (see signature)
    status: null,
    allTasks: [],
    mode: "connecting",
    statusAt: 0,
    tasksKey: null,       // what the task table last showed (renderTasks)
    detailKey: null,      // what the detail panel last showed (renderDetail)
    pollTimer: null,
    refreshing: false,
    again: false,
    announced: false,     // the first reading is not announced (announce)
  };

  // --- the token: from the URL fragment (never a query), kept in sessionStorage -----------
  function takeToken() {
    const hash = window.location.hash.replace(/^#/, "");
    const params = new URLSearchParams(hash);
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      params.delete("token");
      const rest = params.toString();
      const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
      history.replaceState(null, "", url);  // out of the address bar and the history
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }
  const token = takeToken();

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    // Against the origin: a page opened as http://user:pass@host/ has a base URL that fetch
    // refuses; the browser still sends the Basic credentials it was given for this origin.
    const url = new URL(path, window.location.origin);
    const resp = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
    if (resp.status === 401) {
      throw new Error(token ? "the server refused this token" : "this server needs a token: open the page as /#token=<token>");
    }
    if (!resp.ok) {
      let detail = "";
      try { detail = (await resp.json()).error || ""; } catch (_) { /* not JSON */ }
      throw new Error(`${path}: HTTP ${resp.status}${detail ? ` (${detail})` : ""}`);
    }
    return resp.json();
  }

  // --- small DOM helpers -----------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "style") Object.assign(node.style, value);  // CSSOM: allowed under a strict CSP
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);

  function parseTime(value) {
    if (value === null || value === undefined || value === "") return null;
    const ms = typeof value === "number" ? value * 1000 : Date.parse(value);
    return Number.isFinite(ms) ? ms : null;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "never";
    const s = Math.max(0, Math.round(seconds));
    if (s < 5) return "just now";
    if (s < 120) return `${s}s ago`;
    if (s < 7200) return `${Math.round(s / 60)}m ago`;
    if (s < 172800) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function span(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 120) return `${s}s`;
    if (s < 7200) return `${Math.round(s / 60)}m`;
    if (s < 172800) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
  }

  function clock(value) {
    const ms = parseTime(value);
    if (ms === null) return "—";
    const d = new Date(ms);
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function timeEl(value) {
    const ms = parseTime(value);
    if (ms === null) return el("span", { class: "muted", text: "—" });
    return el("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toString(), text: clock(value) });
  }

  function usd(n) {
    if (!Number.isFinite(n)) return "—";
    if (n === 0) return "$0";
    return n < 1 ? `$${n.toFixed(4).replace(/0{1,2}$/, "")}` : `$${n.toFixed(2)}`;
  }
  const num = (n) => (Number.isFinite(n) ? n.toLocaleString() : "—");

  function safeLink(url, text) {
    if (typeof url !== "string" || !url) return el("span", { class: "muted", text: "—" });
    if (/^https?:\/\//i.test(url)) {
      return el("a", { href: url, rel: "noopener noreferrer", target: "_blank", text: text || prLabel(url) });
    }
    return el("code", { class: "pr-local", title: url, text: text || prLabel(url) });
  }
  function prLabel(url) {
    const m = /\/pull\/(\d+)/.exec(url);
    if (m) return `#${m[1]}`;
    const tail = url.split("/").filter(Boolean).pop() || url;
    return tail.length > 24 ? `…${tail.slice(-23)}` : tail;
  }

  function chip(state) {
    const s = String(state || "unknown");
    return el("span", { class: `chip chip-${s.replace(/[^a-z_]/g, "")}`, "data-testid": "state-chip", text: s.replace(/_/g, " ") });
  }

  // --- the fleet verdict -----------------------------------------------------------------
  function verdict(st) {
    const nodes = st.node_details || [];
    const online = nodes.filter((n) => n.status !== "offline" && n.status !== "stopped");
    const blocked = nodes.filter((n) => n.status === "blocked");
    const paused = nodes.filter((n) => n.status === "paused");
    const invalid = (st.invalid || []).length;
    const stale = (st.stale || []).length;
    const t = st.tasks || {};
    const active = t.active ?? t.claimed ?? 0;
    const pending = t.pending ?? 0;
    if (blocked.length) return ["bad", `${blocked.length} agent${blocked.length > 1 ? "s" : ""} blocked: the model credential was refused`];
    if (nodes.length === 0) return pending ? ["bad", `No agents: ${pending} task${pending > 1 ? "s" : ""} waiting`] : ["idle", "No agents yet"];
    if (online.length === 0) return ["bad", `All ${nodes.length} agents offline${pending ? `, ${pending} pending` : ""}`];
    if (invalid || stale) {
      const parts = [];
      if (stale) parts.push(`${stale} stale claim${stale > 1 ? "s" : ""}`);
      if (invalid) parts.push(`${invalid} invalid file${invalid > 1 ? "s" : ""}`);
      return ["warn", `Working; ${parts.join(" and ")} need${stale + invalid > 1 ? "" : "s"} a look`];
    }
    if (paused.length && paused.length === online.length) return ["warn", `Paused on a rate limit: ${paused.length} agent${paused.length > 1 ? "s" : ""} waiting`];
    const tail = active ? `${active} running` : pending ? `${pending} pending` : "idle";
    return ["good", `Healthy: ${online.length} of ${nodes.length} agent${nodes.length > 1 ? "s" : ""} online, ${tail}`];
  }

  function renderHeader(st, health) {
    const [level, text] = verdict(st);
    const box = $("verdict");
    box.dataset.level = level;
    $("verdict-text").textContent = text;
    document.title = `${level === "good" ? "●" : level === "idle" ? "○" : "▲"} Claude Code Cluster`;
    const main = st.main ? String(st.main).slice(0, 10) : "no main";
    const repo = health && health.state_repo ? health.state_repo.url : null;
    $("state-repo").textContent = repo ? `${repo} · main ${main}` : `main ${main}`;
    $("updated").textContent = st.read_at ? `read ${clock(st.read_at)}` : "";
  }

  function renderStats(st) {
    const t = st.tasks || {};
    const n = st.nodes || {};
    const items = [
      ["Agents online", `${n.online ?? 0}/${n.total ?? 0}`, "agents"],
      ["Pending", t.pending ?? 0, "pending"],
      ["Running", t.active ?? t.claimed ?? 0, "active"],
      ["Succeeded", t.succeeded ?? 0, "succeeded"],
      ["Failed", (t.failed ?? 0) + (t.timed_out ?? 0), "failed"],
      ["Total tasks", t.total ?? 0, "total"],
    ];
    $("stats").replaceChildren(...items.map(([label, value, key]) =>
      el("div", { class: `stat stat-${key}`, "data-testid": `stat-${key}` },
        el("dt", { text: label }), el("dd", { text: value }))));
  }

  function renderCallouts(st) {
    const items = [];
    for (const s of st.stale || []) {
      items.push(el("li", { class: "callout callout-stale", "data-testid": `stale-${s.task}` },
        el("strong", { text: "Stale claim" }), " ",
        el("button", { type: "button", class: "link", onclick: () => openTask(s.task), text: s.task }),
        ` held by ${s.agent || "?"}, lease expired ${span(s.expired_for_s || 0)} ago`));
    }
    for (const inv of st.invalid || []) {
      items.push(el("li", { class: "callout callout-invalid", "data-testid": `invalid-${inv.task}` },
        el("strong", { text: "Invalid file" }), " ", el("code", { text: inv.task }), `: ${inv.reason || "unreadable"}`));
    }
    for (const p of st.paused || []) {
      const until = p.until || p.paused_until;
      const who = Array.isArray(p.agents) ? p.agents.join(", ") : (p.node_id || p.agent || "");
      const left = until ? (parseTime(until) - Date.now()) / 1000 : null;
      items.push(el("li", { class: "callout callout-paused", "data-testid": "rate-limit-pause" },
        el("strong", { text: "Rate-limit pause" }), ` ${who}`,
        until ? [" until ", timeEl(until), left !== null && left > 0 ? ` (in ${span(left)})` : ""] : "",
        p.met_by || p.paused_by ? `; met by ${p.met_by || p.paused_by}` : "",
        p.reason ? ` — ${p.reason}` : ""));
    }
    for (const n of (st.node_details || []).filter((x) => x.status === "blocked")) {
      items.push(el("li", { class: "callout callout-blocked" },
        el("strong", { text: "Blocked agent" }), ` ${n.node_id}${n.reason ? `: ${n.reason}` : ""}`));
    }
    $("callouts").replaceChildren(...items);
    $("callouts-section").hidden = items.length === 0;
  }

  function renderAgents(st) {
    const nodes = [...(st.node_details || [])].sort((a, b) =>
      rank(a.status) - rank(b.status) || String(a.node_id).localeCompare(String(b.node_id)));
    const online = nodes.filter((n) => n.status !== "offline" && n.status !== "stopped").length;
    $("agents-count").textContent = nodes.length ? `${online} of ${nodes.length} online` : "";
    if (!nodes.length) {
      $("agents").replaceChildren(el("p", { class: "empty", text: "No agent has sent a heartbeat yet." }));
      return;
    }
    $("agents").replaceChildren(...nodes.map(agentCard));
  }
  // The server's age was true when the status was read; it grows until the next one.
  function ageNow(age) {
    if (!Number.isFinite(age)) return null;
    return age + (ui.statusAt ? (Date.now() - ui.statusAt) / 1000 : 0);
  }
  function rank(status) {
    return { blocked: 0, paused: 1, online: 2, draining: 3, stopped: 4, offline: 5 }[status] ?? 6;
  }

  function agentCard(n) {
    const held = n.tasks || [];
    const status = n.status || "offline";
    const rows = [
      ["Host", n.host || "—"],
      ["Specialties", (n.specialties || []).join(", ") || "any"],
      ["Holds", held.length
        ? held.map((id) => el("button", { type: "button", class: "link held", onclick: () => openTask(id), text: id }))
        : el("span", { class: "muted", text: `nothing (capacity ${n.capacity ?? "?"})` })],
      ["Last seen", el("span", { title: n.last_seen || "", "data-testid": "last-seen", text: ago(ageNow(n.last_seen_age_s)) })],
    ];
    if (n.paused_until) {
      const left = (parseTime(n.paused_until) - Date.now()) / 1000;
      rows.push(["Paused until", [timeEl(n.paused_until), left > 0 ? ` (in ${span(left)})` : ""]]);
    }
    if (n.paused_by) rows.push(["Limit met by", n.paused_by]);
    if (n.reason) rows.push(["Reason", n.reason]);
    return el("article", {
      class: `agent agent-${status}`, "data-testid": `agent-${n.node_id}`, "data-status": status,
      "aria-label": `Agent ${n.node_id}, ${status}`,
    },
    el("header", {},
      el("h3", { text: n.node_id }),
      el("span", { class: `badge badge-${status}`, text: status })),
    el("div", { class: "load", title: `${held.length} of ${n.capacity ?? "?"} slots in use` },
      el("span", { style: { width: `${Math.min(100, (100 * held.length) / Math.max(1, n.capacity || 1))}%` } })),
    el("dl", {}, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
    el("footer", { class: "muted", text: n.version ? `v${n.version}` : "" }));
  }

  // --- spend: tokens and dollars per hour and per task -----------------------------------
  function renderSpend(tasks) {
    const finished = tasks.filter((t) => parseTime(t.finished_at) !== null);
    const costly = finished.filter((t) => Number.isFinite(t.cost_usd));
    const total = costly.reduce((a, t) => a + t.cost_usd, 0);
    const tokens = (t) => (t.input_tokens || 0) + (t.output_tokens || 0);
    const totalTokens = finished.reduce((a, t) => a + tokens(t), 0);
    const now = Date.now();
    const lastHour = finished.filter((t) => now - parseTime(t.finished_at) <= 3600e3);
    const hourCost = lastHour.reduce((a, t) => a + (t.cost_usd || 0), 0);
    const hourTokens = lastHour.reduce((a, t) => a + tokens(t), 0);
    const first = Math.min(...finished.map((t) => parseTime(t.finished_at)));
    const hours = finished.length ? Math.max(1, (now - first) / 3600e3) : 1;
    const per = finished.length || 1;
    const items = [
      ["Last hour", hourCost, hourTokens, "hour"],
      ["Average per hour", total / hours, totalTokens / hours, "rate"],
      ["Per finished task", total / per, totalTokens / per, "task"],
      [`Total, ${finished.length} task${finished.length === 1 ? "" : "s"}`, total, totalTokens, "total"],
    ];
    $("spend").replaceChildren(...items.map(([k, dollars, tok, key]) =>
      el("div", { class: "spend-item", "data-testid": `spend-${key}` }, el("dt", { text: k }),
        el("dd", {}, usd(dollars), el("span", { class: "tok", text: `${num(Math.round(tok))} tok` })))));
    // Twelve hourly bars, newest on the right.
    const buckets = Array.from({ length: 12 }, () => ({ cost: 0, count: 0 }));
    const hourStart = Math.floor(now / 3600e3) * 3600e3;
    for (const t of finished) {
      const idx = 11 - Math.floor((hourStart - Math.floor(parseTime(t.finished_at) / 3600e3) * 3600e3) / 3600e3);
      if (idx >= 0 && idx < 12) { buckets[idx].cost += t.cost_usd || 0; buckets[idx].count += 1; }
    }
    const peakCost = Math.max(...buckets.map((b) => b.cost));
    const peakCount = Math.max(1, ...buckets.map((b) => b.count));
    $("spend-bars").replaceChildren(...buckets.map((b, i) => {
      const h = new Date(hourStart - (11 - i) * 3600e3).getHours();
      const frac = peakCost > 0 ? b.cost / peakCost : b.count / peakCount;
      return el("div", { class: "bar", title: `${String(h).padStart(2, "0")}:00 — ${usd(b.cost)}, ${b.count} finished` },
        el("span", { class: "bar-fill", style: { height: `${Math.max(b.count ? 4 : 0, Math.round(frac * 100))}%` } }),
        el("span", { class: "bar-label", text: i % 3 === 2 ? String(h).padStart(2, "0") : "" }));
    }));
  }

  function renderQueue(q) {
    if (!q) return;
    const by = Object.entries(q.by_specialty || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    const items = [
      ["Pending", q.pending ?? 0],
      ["Claimable now", q.claimable_now ?? 0],
      ["Waiting on dependencies", q.waiting_on_dependencies ?? 0],
      ["Oldest pending", q.oldest_pending_age_s ? span(q.oldest_pending_age_s) : "—"],
      ["By specialty", by || "—"],
    ];
    $("queue").replaceChildren(...items.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v }))));
  }

  // --- tasks -----------------------------------------------------------------------------
  function fillSelect(select, values, current) {
    const want = ["", ...[...new Set(values)].filter(Boolean).sort()];
    if (current && !want.includes(current)) want.push(current);
    const have = [...select.options].map((o) => o.value);
    if (have.join("\n") === want.join("\n")) return;
    select.replaceChildren(...want.map((v) => el("option", { value: v, text: v || "all" })));
    select.value = current;
  }

  function renderFilters(tasks) {
    fillSelect($("filter-state"), tasks.map((t) => t.state), ui.filters.state);
    fillSelect($("filter-specialty"), tasks.map((t) => t.specialty), ui.filters.specialty);
    fillSelect($("filter-label"), tasks.flatMap((t) => t.labels || []), ui.filters.label);
  }

  function renderStateBar(tasks) {
    const counts = {};
    for (const t of tasks) counts[t.state] = (counts[t.state] || 0) + 1;
    const total = tasks.length || 1;
    $("state-bar").replaceChildren(...Object.entries(counts).sort().map(([s, c]) =>
      el("span", { class: `seg chip-${s.replace(/[^a-z_]/g, "")}`, style: { flexGrow: String(c / total) }, title: `${s}: ${c}` })));
  }

  function renderTasks(rows) {
    rows = [...rows].sort((a, b) => (parseTime(b.added_at) ?? 0) - (parseTime(a.added_at) ?? 0)
      || String(a.id).localeCompare(String(b.id)));
    // Rebuilt only when something in it changed: a focused row keeps its focus meanwhile.
    const key = JSON.stringify([rows, ui.selected, ui.allTasks.length]);
    if (key === ui.tasksKey) return;
    ui.tasksKey = key;
    const focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest("#task-rows tr") : null;
    const refocus = focused ? focused.dataset.testid : null;
    $("tasks-count").textContent = `${rows.length}${rows.length !== ui.allTasks.length ? ` of ${ui.allTasks.length}` : ""}`;
    $("tasks-empty").hidden = rows.length > 0;
    $("task-rows").replaceChildren(...rows.map((t) => {
      const tokens = (t.input_tokens || 0) + (t.output_tokens || 0);
      const open = () => openTask(t.id);
      return el("tr", {
        "data-testid": `task-${t.id}`, "data-state": t.state, tabindex: 0,
        class: t.id === ui.selected ? "selected" : null,
        "aria-selected": t.id === ui.selected ? "true" : "false",
        onclick: open,
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } },
      },
      el("th", { scope: "row" }, el("span", { class: "task-id", text: t.id }),
        t.title ? el("span", { class: "task-title", text: t.title }) : null),
      el("td", {}, chip(t.state)),
      el("td", { text: t.specialty || "—" }),
      el("td", {}, (t.labels || []).map((l) => el("span", { class: "label", text: l }))),
      el("td", { text: t.agent || "—" }),
      el("td", { class: "num", text: t.attempt ?? "—" }),
      el("td", {}, safeLink(t.pull_request)),
      el("td", { class: "num", text: tokens ? num(tokens) : "—" }),
      el("td", { class: "num", text: Number.isFinite(t.cost_usd) ? usd(t.cost_usd) : "—" }),
      el("td", {}, timeEl(t.finished_at)));
    }));
    if (refocus) {
      const again = document.querySelector(`#task-rows tr[data-testid="${CSS.escape(refocus)}"]`);
      if (again) again.focus();
    }
  }

  // --- the task detail panel and its timeline --------------------------------------------
  async function openTask(id) {
    ui.selected = id;
    for (const row of document.querySelectorAll("#task-rows tr")) {
      const on = row.dataset.testid === `task-${id}`;
      row.classList.toggle("selected", on);
      row.setAttribute("aria-selected", on ? "true" : "false");
    }
    $("detail").hidden = false;
    document.body.classList.add("detail-open");
    ui.detailKey = null;
    $("detail-heading").textContent = id;
    await renderDetail();
  }

  async function renderDetail() {
    const id = ui.selected;
    if (!id) return;
    let task;
    try {
      task = await api(`/api/tasks/${encodeURIComponent(id)}`);
    } catch (err) {
      $("detail-body").replaceChildren(el("p", { class: "error", text: String(err.message || err) }));
      return;
    }
    if (ui.selected !== id) return;
    const key = JSON.stringify(task);
    if (key === ui.detailKey) return;  // unchanged: keep what the reader opened or selected
    ui.detailKey = key;
    const specOpen = Boolean($("detail-body").querySelector("details.spec[open]"));
    const facts = [
      ["State", chip(task.state)],
      ["Title", task.title || "—"],
      ["Specialty", task.specialty || "—"],
      ["Priority", task.priority ?? "—"],
      ["Labels", (task.labels || []).map((l) => el("span", { class: "label", text: l }))],
      ["Agent", task.agent || "—"],
      ["Attempt", task.attempt ?? "—"],
      ["Pull request", safeLink(task.pull_request, task.pull_request)],
      ["Tokens", `${num(task.input_tokens || 0)} in · ${num(task.output_tokens || 0)} out`],
      ["Cost", Number.isFinite(task.cost_usd) ? usd(task.cost_usd) : "—"],
    ];
    const result = task.result || null;
    const body = [
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
      el("h3", { text: "Timeline" }),
      timeline(task),
    ];
    if (result && result.reason) body.push(el("p", { class: "reason" }, el("strong", { text: "Result: " }), result.reason));
    if (task.spec) {
      body.push(el("details", { class: "spec", open: specOpen }, el("summary", { text: "Task file" }),
        el("pre", { text: typeof task.spec === "string" ? task.spec : JSON.stringify(task.spec, null, 2) })));
    }
    $("detail-body").replaceChildren(...body);
  }

  function timeline(task) {
    const events = [];
    if (task.added_at) events.push({ kind: "added", at: task.added_at });
    for (const h of task.history || []) events.push(h);
    if (!events.length) return el("p", { class: "muted", text: "Nothing has happened to this task yet." });
    return el("ol", { class: "timeline", "data-testid": "timeline" }, events.map((h) => {
      let kind = h.kind;
      let text;
      if (kind === "added") text = "Added to the queue";
      else if (kind === "claim" && h.takeover_of) { kind = "takeover"; text = `Taken over by ${h.agent} from ${h.takeover_of} (attempt ${h.attempt})`; }
      else if (kind === "claim") text = `Claimed by ${h.agent} (attempt ${h.attempt})`;
      else if (kind === "release") text = `Released by ${h.agent}: ${h.status || "released"}${h.counted === false ? " (not counted)" : ""}`;
      else if (kind === "result") text = `Result from ${h.agent}: ${h.status || "done"} (attempt ${h.attempt})`;
      else text = `${kind} ${h.agent || ""}`;
      return el("li", { class: `tl tl-${kind} ${h.status ? `tl-${h.status}` : ""}`, "data-kind": kind },
        el("span", { class: "tl-dot", "aria-hidden": "true" }),
        el("div", { class: "tl-body" },
          el("div", { class: "tl-text", text }),
          h.reason ? el("div", { class: "tl-reason", text: h.reason }) : null,
          stepFacts(h),
          timeEl(h.at)));
    }));
  }

  // One attempt's own figures, as its release or result records them.
  function stepFacts(h) {
    const facts = [];
    if (Number.isFinite(h.duration_s)) facts.push(span(h.duration_s));
    const tokens = (h.input_tokens || 0) + (h.output_tokens || 0);
    if (tokens) facts.push(`${num(tokens)} tok`);
    if (Number.isFinite(h.cost_usd) && h.cost_usd > 0) facts.push(usd(h.cost_usd));
    if (h.branch) facts.push(h.branch);
    const parts = facts.length ? [facts.join(" · ")] : [];
    if (h.kind === "release" && parseTime(h.retry_at) !== null && parseTime(h.retry_at) > Date.now()) {
      parts.push(parts.length ? " · retry " : "retry ", timeEl(h.retry_at));
    }
    if (h.pull_request) parts.push(parts.length ? " · " : "", safeLink(h.pull_request));
    return parts.length ? el("div", { class: "tl-facts" }, parts) : null;
  }

  $("detail-close").addEventListener("click", () => {
    ui.selected = null;
    ui.detailKey = null;
    $("detail").hidden = true;
    document.body.classList.remove("detail-open");
    for (const row of document.querySelectorAll("#task-rows tr.selected")) row.classList.remove("selected");
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && ui.selected) $("detail-close").click(); });

  // Task state changes, said once to a screen reader (the table itself is not a live region:
  // it is redrawn on every change).
  function announce(before, after) {
    if (!ui.announced) { ui.announced = true; return; }  // not the first reading
    const was = new Map(before.map((t) => [t.id, t.state]));
    const said = after.filter((t) => was.get(t.id) !== t.state)
      .map((t) => (was.has(t.id) ? `${t.id} is now ${t.state}` : `${t.id} added, ${t.state}`));
    if (said.length) $("announce").textContent = said.slice(0, 5).join("; ") + (said.length > 5 ? `; and ${said.length - 5} more` : "");
  }

  // --- refreshing: one at a time, coalescing changes that arrive meanwhile ----------------
  function query() {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(ui.filters)) if (v) params.set(k, v);
    const s = params.toString();
    return s ? `/api/tasks?${s}` : "/api/tasks";
  }

  async function refresh(st) {
    if (st) ui.status = st;
    if (!ui.status) return;
    if (ui.refreshing) { ui.again = true; return; }
    ui.refreshing = true;
    try {
      do {
        ui.again = false;
        const filtered = Object.values(ui.filters).some(Boolean);
        const [all, queue, some] = await Promise.all([
          api("/api/tasks"),
          api("/api/queue/status").catch(() => null),
          filtered ? api(query()) : Promise.resolve(null),
        ]);
        announce(ui.allTasks, all.tasks || []);
        ui.allTasks = all.tasks || [];
        renderHeader(ui.status, ui.health);
        renderStats(ui.status);
        renderCallouts(ui.status);
        renderAgents(ui.status);
        renderFilters(ui.allTasks);
        renderStateBar(ui.allTasks);
        renderTasks(some ? some.tasks || [] : ui.allTasks);
        renderSpend(ui.allTasks);
        renderQueue(queue);
        if (ui.selected) await renderDetail();
      } while (ui.again);
    } catch (err) {
      ui.lastSignature = null;  // the next status, changed or not, tries again
      showError(err);
    } finally {
      ui.refreshing = false;
    }
  }

  // What a reading says, less the ages that grow between readings: claims, releases and
  // results live on refs of their own until they are folded into main, so main's commit
  // alone would miss them; a heartbeat, a claim or a result each changes this.
  const VOLATILE = new Set(["last_seen_age_s", "resumes_in_s", "expired_for_s", "read_at", "computed_at"]);
  function signature(st) {
    return JSON.stringify(st, (key, value) => (VOLATILE.has(key) ? undefined : value));
  }

  function onStatus(st) {
    ui.statusAt = Date.now();
    const sig = signature(st);
    const changed = sig !== ui.lastSignature;
    ui.lastSignature = sig;
    if (changed || !ui.status) { refresh(st); return; }
    // Nothing moved: ages and pause countdowns still do; redraw the cheap parts only.
    ui.status = st;
    renderHeader(st, ui.health);
    renderAgents(st);
    renderCallouts(st);
  }

  function setMode(mode, text) {
    ui.mode = mode;
    $("live").dataset.mode = mode;
    $("live-text").textContent = text;
  }

  function showError(err) {
    setMode("error", `error: ${err.message || err}`);
  }

  async function pollOnce() {
    try {
      const st = await api("/api/cluster/status");
      if (ui.mode !== "polling") setMode("polling", token ? "live (polling, token)" : "live (polling)");
      onStatus(st);
    } catch (err) {
      showError(err);
    }
  }

  function startPolling() {
    if (ui.pollTimer) return;
    pollOnce();
    ui.pollTimer = setInterval(pollOnce, POLL_MS);
  }

  function startStream() {
    if (token || typeof EventSource === "undefined") { startPolling(); return; }
    const source = new EventSource(new URL("/api/events", window.location.origin));
    source.addEventListener("open", () => setMode("stream", "live"));
    source.addEventListener("status", (e) => {
      if (ui.mode !== "stream") setMode("stream", "live");
      try { onStatus(JSON.parse(e.data)); } catch (err) { showError(err); }
    });
    source.addEventListener("error", () => {
      source.close();  // fall back to polling for the rest of this page's life
      startPolling();
    });
  }

  // Filters: the selects drive the API's own filters.
  for (const name of ["state", "specialty", "label"]) {
    $(`filter-${name}`).addEventListener("change", (e) => {
      ui.filters[name] = e.target.value;
      refresh();
    });
  }
  // Ages and countdowns tick between changes without asking the server.
  setInterval(() => { if (ui.status) { renderAgents(ui.status); renderCallouts(ui.status); } }, 15000);

  api("/health").then((h) => {
    ui.health = h;
    if (h.version) $("version").textContent = `Version ${h.version}.`;
    if (ui.status) renderHeader(ui.status, h);
  }).catch(() => { /* the status stream says what is wrong */ });
  startStream();
})();
