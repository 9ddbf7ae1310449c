// The dashboard: signs in with a key kept in session storage, then reads GET /v1/dashboard
// with If-None-Match every half second while the tab is visible (a 304 costs the server one
// small answer) and every 30 s while it is hidden; progress bars and relative times move by
// themselves between answers.
"use strict";

(() => {
  const VISIBLE_MS = 500;
  const HIDDEN_MS = 30000;
  const STORAGE_KEY = "vt.dashboard.token";
  const STATUS_WORD = { queued: "Queued", processing: "Processing", completed: "Completed", error: "Error", cancelled: "Cancelled" };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(STORAGE_KEY),
    url: null, etag: null, data: null, skewMs: 0,
    details: new Map(), // job id -> {etag, data}: the open webhook panels
    timer: null, busy: false,
  };

  // ------------------------------------------------------------------ helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const now = () => Date.now() + state.skewMs;
  const parse = (iso) => (iso ? Date.parse(iso) : null);

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function relative(ms) {
    const s = Math.round((ms - now()) / 1000);
    const a = Math.abs(s);
    const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : `${Math.round(a / 3600)} h`;
    if (a === 0) return "now";
    return s > 0 ? `in ${span}` : `${span} ago`;
  }

  function when(iso, label) {
    const ms = parse(iso);
    if (ms === null) return h("span", { class: "muted" }, "—");
    return h("time", { class: "when", datetime: iso, title: `${label}: ${iso}` },
      clock(ms), h("span", { class: "rel", "data-at": String(ms) }, relative(ms)));
  }

  async function call(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
    return fetch(path, { ...options, headers, cache: "no-store" });
  }

  async function problem(resp) {
    try {
      const body = await resp.json();
      return `${body.detail || body.title} (${body.code}, HTTP ${resp.status})`;
    } catch (err) {
      return `HTTP ${resp.status}`;
    }
  }

  const notice = (text) => { $("notice").textContent = text; };

  // -------------------------------------------------------------- sign-in

  function showSignIn(message) {
    $("board").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("token").focus();
  }

  function signOut(message) {
    clearTimeout(state.timer);
    sessionStorage.removeItem(STORAGE_KEY);
    Object.assign(state, { token: null, url: null, etag: null, data: null });
    state.details.clear();
    showSignIn(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      showSignIn("Enter an API key or the admin token.");
      return;
    }
    $("signin-button").disabled = true;
    state.token = token;
    state.etag = null;
    try {
      const resp = await call(boardUrl());
      if (!resp.ok) {
        const text = await problem(resp);
        state.token = null;
        showSignIn(resp.status === 401 ? `That key was not accepted: ${text}` : text);
        return;
      }
      sessionStorage.setItem(STORAGE_KEY, token);
      $("token").value = "";
      await accept(resp);
      showBoard();
      live(true);
      schedule(VISIBLE_MS);
    } catch (err) {
      state.token = null;
      showSignIn(`The server did not answer: ${err.message}`);
    } finally {
      $("signin-button").disabled = false;
    }
  }

  function showBoard() {
    $("signin").hidden = true;
    $("board").hidden = false;
    $("who").hidden = false;
  }

  // ------------------------------------------------------------- polling

  function boardUrl() {
    const query = new URLSearchParams();
    const status = $("filter-status").value;
    const client = $("filter-client").value;
    if (status) query.set("status", status);
    if (client) query.set("client_id", client);
    const text = query.toString();
    return text ? `/v1/dashboard?${text}` : "/v1/dashboard";
  }

  function schedule(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, ms);
  }

  function interval() {
    return document.visibilityState === "hidden" ? HIDDEN_MS : VISIBLE_MS;
  }

  async function accept(resp) {
    state.etag = resp.headers.get("ETag");
    state.data = await resp.json();
    state.skewMs = (parse(state.data.generated_at) || Date.now()) - Date.now();
    render();
  }

  async function poll() {
    if (!state.token || state.busy) return;
    state.busy = true;
    try {
      const url = boardUrl();
      if (url !== state.url) {
        state.url = url;
        state.etag = null;
      }
      const resp = await call(url, { headers: state.etag ? { "If-None-Match": state.etag } : {} });
      if (resp.status === 401) {
        signOut(`Signed out: ${await problem(resp)}`);
        return;
      }
      if (resp.status === 304) tick();
      else if (resp.ok) await accept(resp);
      else showError(await problem(resp));
      if (resp.ok || resp.status === 304) showError(null);
      await refreshDetails();
      live(true);
    } catch (err) {
      live(false);
      showError(`The server did not answer: ${err.message}`);
    } finally {
      state.busy = false;
      if (state.token) schedule(interval());
    }
  }

  function live(ok) {
    const box = $("live");
    const hidden = document.visibilityState === "hidden";
    box.className = `live ${ok ? "on" : "off"}`;
    $("live-text").textContent = ok
      ? `${hidden ? "Live, slowed while hidden" : "Live"} · ${clock(now())}`
      : "Reconnecting…";
  }

  function showError(text) {
    const box = $("board-error");
    box.hidden = !text;
    box.textContent = text || "";
  }

  async function refreshDetails() {
    for (const [id, detail] of state.details) {
      const resp = await call(`/v1/dashboard/jobs/${encodeURIComponent(id)}`, {
        headers: detail.etag ? { "If-None-Match": detail.etag } : {},
      });
      if (resp.status === 404) {
        state.details.delete(id);
        continue;
      }
      if (!resp.ok) continue;
      detail.etag = resp.headers.get("ETag");
      detail.data = await resp.json();
      const cell = document.querySelector(`[data-detail="${CSS.escape(id)}"]`);
      if (cell) keepFocus(() => cell.replaceChildren(deliveries(id, detail.data)));
    }
  }

  // ------------------------------------------------------------- actions

  async function act(id, action) {
    const resp = await call(`/v1/dashboard/jobs/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    if (resp.ok) {
      notice(action === "cancel" ? `Job ${id} cancelled.` : `The webhook of ${id} is queued again.`);
      if (action === "redeliver" && !state.details.has(id)) state.details.set(id, { etag: null, data: null });
    } else {
      notice(`Could not ${action} ${id}: ${await problem(resp)}`);
    }
    state.etag = null;
    for (const detail of state.details.values()) detail.etag = null;
    schedule(0);
  }

  function toggle(id) {
    if (state.details.has(id)) state.details.delete(id);
    else state.details.set(id, { etag: null, data: null });
    render();
    schedule(0);
  }

  // ------------------------------------------------------------- rendering

  function keepFocus(update) {
    const key = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    update();
    if (key) {
      const again = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  function render() {
    const data = state.data;
    if (!data) return;
    keepFocus(() => {
      const viewer = data.viewer;
      $("who-text").replaceChildren(
        viewer.role === "admin" ? "Operator" : viewer.name,
        h("span", { class: "role" }, viewer.role === "admin" ? "admin: every client" : "client"));
      const s = data.summary;
      $("stat-queue").textContent = s.queue_depth;
      $("stat-slots").textContent = `${s.slots_in_use} / ${s.workers}`;
      $("stat-slots-hint").textContent = viewer.role === "admin" ? "busy of the server's slots" : "running your jobs, of the server's slots";
      $("stat-rate").textContent = s.jobs_per_minute;
      $("stat-hooks").textContent = s.webhook_success_rate === null ? "—" : `${(s.webhook_success_rate * 100).toFixed(1)} %`;
      $("stat-hooks-hint").textContent = `of ${s.webhooks_concluded} concluded, last hour`;
      list("active", data.active, "No job is queued or processing.");
      list("completed", data.completed, "No completed job yet.");
      list("failed", data.failed, "No failed or cancelled job.");
      clients(data.clients);
    });
  }

  function list(name, jobs, emptyText) {
    $(`count-${name}`).textContent = jobs.length;
    const box = $(`list-${name}`);
    if (!jobs.length) {
      box.replaceChildren(h("p", { class: "empty" }, emptyText));
      return;
    }
    const final = name !== "active";
    const admin = state.data.viewer.role === "admin";
    const heads = ["Job", "Status", "Requested", final ? "Started" : "Started / est. start",
      final ? "Finished" : "Est. completion", "Progress", "Attempts", ...(final ? ["Result or error", "Webhook"] : []), "Actions"];
    const body = h("tbody", {});
    for (const job of jobs) {
      body.append(row(job, heads, admin));
      if (state.details.has(job.id)) {
        const detail = state.details.get(job.id);
        body.append(h("tr", { class: "detail", id: `detail-${job.id}` },
          h("td", { colspan: heads.length, "data-detail": job.id },
            detail.data ? deliveries(job.id, detail.data) : h("p", { class: "muted" }, "Loading deliveries…"))));
      }
    }
    box.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "jobs", "aria-labelledby": `h-${name}` },
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), body)));
  }

  const stateOf = (job) => (job.status === "pending" ? job.stage : job.status);

  function progressOf(job) {
    if (stateOf(job) !== "processing") return job.progress;
    const start = parse(job.started_at);
    const end = parse(job.estimated_completion_at);
    if (start === null || end === null || end <= start) return job.progress;
    return Math.max(job.progress, Math.min(0.99, (now() - start) / (end - start)));
  }

  function row(job, heads, admin) {
    const st = stateOf(job);
    const cells = [];
    cells.push(h("div", {}, h("span", { class: "jobid mono", title: job.id }, job.id),
      h("div", { class: "sub" }, `${job.target_language || "?"} · priority ${job.priority}${admin ? ` · ${job.client_name}` : ""}`)));
    cells.push(h("div", {}, h("span", { class: `badge ${st}` }, STATUS_WORD[st] || st),
      job.queue_position ? h("span", { class: "pos" }, `#${job.queue_position} in queue`) : null));
    cells.push(when(job.created_at, "Requested"));
    cells.push(job.started_at ? when(job.started_at, "Started")
      : job.estimated_start_at ? h("div", {}, h("span", { class: "sub" }, "est. "), when(job.estimated_start_at, "Estimated start"))
        : when(null));
    cells.push(job.finished_at ? when(job.finished_at, "Finished") : when(job.estimated_completion_at, "Estimated completion"));
    const value = progressOf(job);
    cells.push(h("div", { class: "progress" },
      h("progress", { max: "1", value: value.toFixed(3), "aria-label": `progress of ${job.id}`,
        "data-job": job.id }),
      h("span", { class: "pct", "data-pct": job.id }, `${Math.round(value * 100)} %`)));
    cells.push(h("span", { class: "nowrap" }, job.attempts));
    if (job.status !== "pending") {
      cells.push(outcome(job));
      cells.push(job.webhook
        ? h("span", { class: `hook ${job.webhook.state}` }, `${job.webhook.state} (${job.webhook.attempts} attempt${job.webhook.attempts === 1 ? "" : "s"})`)
        : h("span", { class: "muted" }, job.callback_url ? "not yet" : "none"));
    }
    const open = state.details.has(job.id);
    const buttons = [h("button", {
      type: "button", class: "secondary small", "data-key": `hooks:${job.id}`,
      "aria-expanded": open ? "true" : "false", "aria-controls": `detail-${job.id}`,
      onclick: () => toggle(job.id),
    }, open ? "Webhooks ▴" : "Webhooks ▾")];
    if (job.status === "pending") {
      buttons.push(h("button", {
        type: "button", class: "danger small", "data-key": `cancel:${job.id}`,
        "aria-label": `Cancel ${job.id}`, onclick: (e) => { e.currentTarget.disabled = true; act(job.id, "cancel"); },
      }, "Cancel"));
    }
    cells.push(h("div", { class: "actions" }, buttons));
    return h("tr", { class: `job ${st}`, "data-job-row": job.id },
      cells.map((c, i) => h("td", { "data-label": heads[i], class: i === cells.length - 1 ? "actions-cell" : null }, c)));
  }

  function outcome(job) {
    if (job.result && job.result.video_url) return h("span", { class: "outcome mono", title: job.result.video_url }, job.result.video_url);
    if (job.error) return h("span", { class: "outcome bad" }, `${job.error.code}: ${job.error.message}`);
    if (job.status === "cancelled") return h("span", { class: "outcome muted" }, "cancelled");
    return h("span", { class: "muted" }, "—");
  }

  function deliveries(id, detail) {
    const job = detail.job;
    const box = h("div", { class: "deliveries" }, h("h3", {}, `Webhook deliveries of ${id}`));
    if (!detail.deliveries.length) {
      box.append(h("p", { class: "muted" }, job.callback_url
        ? "No webhook yet: one is sent when the job ends." : "This job has no callback URL: no webhook is sent."));
    }
    for (const event of detail.deliveries) {
      const head = h("div", { class: "event-head" },
        h("strong", {}, event.type), h("span", { class: "mono" }, event.webhook_id),
        h("span", { class: `hook ${event.state}` }, `${event.state}, ${event.attempts} attempt${event.attempts === 1 ? "" : "s"}`),
        event.next_attempt_at ? h("span", {}, "next attempt ", when(event.next_attempt_at, "Next attempt")) : null);
      const rows = event.attempt_log.map((a) => h("tr", { "data-attempt": String(a.attempt) },
        h("td", {}, `#${a.attempt}`), h("td", {}, when(a.attempted_at, "Attempted")),
        h("td", {}, a.status_code === null ? (a.error || "no answer") : `HTTP ${a.status_code}`),
        h("td", {}, a.latency_ms === null ? "—" : `${a.latency_ms.toFixed(1)} ms`),
        h("td", {}, a.outcome), h("td", {}, a.next_attempt_at ? when(a.next_attempt_at, "Next attempt") : "—")));
      box.append(h("div", { class: "event" }, head, rows.length
        ? h("table", { class: "attempts" }, h("thead", {}, h("tr", {},
          ["Attempt", "Time", "Answer", "Latency", "Outcome", "Next attempt"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows))
        : h("p", { class: "muted" }, "No attempt yet.")));
    }
    const actions = h("div", { class: "actions" });
    if (job.status !== "pending" && job.callback_url) {
      actions.append(h("button", {
        type: "button", class: "secondary small", "data-key": `redeliver:${id}`,
        onclick: (e) => { e.currentTarget.disabled = true; act(id, "redeliver"); },
      }, "Redeliver webhook"));
    }
    box.append(actions);
    return box;
  }

  function clients(list) {
    const section = $("clients-section");
    const label = $("filter-client-label");
    section.hidden = !list;
    label.hidden = !list;
    if (!list) return;
    $("count-clients").textContent = list.length;
    $("clients").replaceChildren(...list.map((c) => h("li", {},
      h("div", {}, h("div", { class: "name" }, c.name), h("div", { class: "sub mono" }, c.id)),
      h("button", { type: "button", class: "secondary small", "data-key": `client:${c.id}`,
        onclick: () => { $("filter-client").value = c.id; schedule(0); } }, "Show jobs"))));
    const select = $("filter-client");
    const chosen = select.value;
    if (select.options.length !== list.length + 1 || [...select.options].slice(1).some((o, i) => o.value !== list[i].id)) {
      select.replaceChildren(h("option", { value: "" }, "All clients"),
        ...list.map((c) => h("option", { value: c.id }, `${c.name} (${c.id})`)));
      select.value = chosen;
    }
  }

  // Between answers: progress bars and relative times follow the clock.
  function tick() {
    if (!state.data) return;
    const jobs = [...state.data.active, ...state.data.completed, ...state.data.failed];
    for (const job of jobs) {
      const bar = document.querySelector(`progress[data-job="${CSS.escape(job.id)}"]`);
      const pct = document.querySelector(`[data-pct="${CSS.escape(job.id)}"]`);
      if (!bar || !pct) continue;
      const value = progressOf(job);
      bar.value = value;
      pct.textContent = `${Math.round(value * 100)} %`;
    }
    for (const rel of document.querySelectorAll(".rel[data-at]")) rel.textContent = relative(Number(rel.dataset.at));
  }

  // --------------------------------------------------------------- start

  document.addEventListener("visibilitychange", () => {
    if (!state.token) return;
    live(true);
    schedule(document.visibilityState === "hidden" ? HIDDEN_MS : 0);
  });
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(null));
    $("filter-status").addEventListener("change", () => schedule(0));
    $("filter-client").addEventListener("change", () => schedule(0));
    if (state.token) {
      showBoard();
      schedule(0);
    } else {
      showSignIn(null);
    }
  });
})();
