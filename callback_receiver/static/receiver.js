// The receiver's page: signs in with the feed token (kept in session storage), then reads
// GET /v1/receipts with If-None-Match every half second while visible, every 30 s while
// hidden. One line per receipt; a rejected one says why.
"use strict";

(() => {
  const VISIBLE_MS = 500;
  const HIDDEN_MS = 30000;
  const STORAGE_KEY = "vt.receiver.token";
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem(STORAGE_KEY), url: null, etag: null, timer: null, busy: false };

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function when(iso) {
    const d = new Date(iso);
    const date = d.toLocaleDateString([], { month: "short", day: "numeric" });
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    return h("time", { class: "when", datetime: iso, title: iso },
      h("span", { class: "date" }, date), `${time}.${String(d.getMilliseconds()).padStart(3, "0")}`);
  }

  async function problem(resp) {
    try {
      const body = await resp.json();
      return `${body.detail || body.title} (${body.code}, HTTP ${resp.status})`;
    } catch (err) {
      return `HTTP ${resp.status}`;
    }
  }

  function url() {
    const job = $("job-filter").value.trim();
    return job ? `/v1/receipts?job_id=${encodeURIComponent(job)}` : "/v1/receipts";
  }

  function showSignIn(message) {
    clearTimeout(state.timer);
    $("board").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    $("signin-error").hidden = !message;
    $("signin-error").textContent = message || "";
    $("token").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(STORAGE_KEY);
    Object.assign(state, { token: null, url: null, etag: null });
    showSignIn(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      showSignIn("Enter the feed token.");
      return;
    }
    state.token = token;
    state.etag = null;
    state.url = null;
    const ok = await poll(true);
    if (ok) {
      sessionStorage.setItem(STORAGE_KEY, token);
      $("token").value = "";
    }
  }

  function schedule(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => poll(false), ms);
  }

  async function poll(signingIn) {
    if (!state.token || state.busy) return false;
    state.busy = true;
    let ok = false;
    try {
      const target = url();
      if (target !== state.url) {
        state.url = target;
        state.etag = null;
      }
      const headers = { Authorization: `Bearer ${state.token}` };
      if (state.etag) headers["If-None-Match"] = state.etag;
      const resp = await fetch(target, { headers, cache: "no-store" });
      if (resp.status === 401) {
        const text = await problem(resp);
        signOut(signingIn ? `That token was not accepted: ${text}` : `Signed out: ${text}`);
        return false;
      }
      if (resp.ok) {
        state.etag = resp.headers.get("ETag");
        render(await resp.json());
      } else if (resp.status !== 304) {
        showError(await problem(resp));
        return false;
      }
      showError(null);
      $("signin").hidden = true;
      $("board").hidden = false;
      $("who").hidden = false;
      live(true);
      ok = true;
    } catch (err) {
      live(false);
      if (signingIn) showSignIn(`The receiver did not answer: ${err.message}`);
      else showError(`The receiver did not answer: ${err.message}`);
    } finally {
      state.busy = false;
      if (state.token) schedule(document.visibilityState === "hidden" ? HIDDEN_MS : VISIBLE_MS);
    }
    return ok;
  }

  function live(ok) {
    const hidden = document.visibilityState === "hidden";
    $("live").className = `live ${ok ? "on" : "off"}`;
    $("live-text").textContent = ok ? (hidden ? "Live, slowed while hidden" : "Live") : "Reconnecting…";
  }

  function showError(text) {
    $("board-error").hidden = !text;
    $("board-error").textContent = text || "";
  }

  function render(body) {
    const rows = body.receipts.map((r) => {
      const verified = r.result === "verified";
      const verdict = verified
        ? [h("span", { class: "badge ok" }, "verified"), r.duplicate ? h("span", { class: "badge dup" }, "duplicate") : null]
        : h("span", { class: "badge bad" }, `rejected, HTTP ${r.status}`);
      const middle = verified
        ? [h("td", {}, h("span", { class: "mono id", title: r.job_id || "" }, r.job_id || "—")), h("td", {}, r.type || "—")]
        : [h("td", { colspan: "2", class: "reason" }, h("code", {}, r.result), `: ${r.reason}`)];
      return h("tr", { class: verified ? "verified" : "rejected" },
        h("td", {}, when(r.received_at)), h("td", {}, verdict), middle,
        h("td", {}, h("span", { class: "mono id", title: r.webhook_id || "" }, r.webhook_id || "none")));
    });
    $("rows").replaceChildren(...rows);
    $("empty").hidden = rows.length > 0;
    $("empty").textContent = $("job-filter").value.trim() ? "No webhook received for this job." : "No webhook received yet.";
    const rejected = body.receipts.filter((r) => r.result !== "verified").length;
    $("stat-stored").textContent = body.stored_events;
    $("stat-shown").textContent = body.receipts.length;
    $("stat-verified").textContent = body.receipts.length - rejected;
    $("stat-rejected").textContent = rejected;
  }

  document.addEventListener("visibilitychange", () => {
    if (state.token) schedule(document.visibilityState === "hidden" ? HIDDEN_MS : 0);
  });
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(null));
    $("filter-form").addEventListener("submit", (e) => { e.preventDefault(); schedule(0); });
    $("clear-filter").addEventListener("click", () => { $("job-filter").value = ""; schedule(0); });
    if (state.token) schedule(0);
    else showSignIn(null);
  });
})();
