// The operator's view of one canonlog ledger: plain browser JavaScript over the
// service's own /v1 API, no build step. Everything the API returns is put on the
// page as text (textContent), never as markup.
"use strict";

const API = new URL("../v1/", document.baseURI);
const ROOT = new URL("../", document.baseURI);
const TOKEN_KEY = "canonlog.token";
const RECENT = 25;           // events shown
const POLL_MS = 2000;        // state, readiness and verification refresh
const SYSTEM_STREAM = "$ledger";  // the ledger's own events: grants, halts, resumes
const HALT_EVENT = "canonlog.halted";

const $ = (id) => document.getElementById(id);
let tailAbort = null;
let lastSequence = 0;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function notice(text, kind = "") {
  $("notice").textContent = text;
  $("notice").dataset.kind = kind;
}

// Calls the API; returns the parsed body, or throws an Error carrying the standard error body.
async function api(path, options = {}) {
  const response = await fetch(new URL(path, API), { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.ok && $("notice").dataset.kind === "auth") notice("");
  if (!response.ok) {
    const error = new Error(body?.error?.message || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = body?.error?.code;
    if (response.status === 401) notice("This service needs a bearer token: paste one above.", "auth");
    if (response.status === 403) notice(`Refused: ${error.message}`);
    throw error;
  }
  return body;
}

function short(hash) { return hash ? `${hash.slice(0, 12)}…` : ""; }

function pill(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.className = `pill ${kind}`;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showEvent(event, fresh) {
  if (document.querySelector(`#events tr[data-sequence="${event.sequence}"]`)) return;
  const body = $("events");
  const row = body.insertRow(0);
  row.dataset.sequence = event.sequence;
  if (fresh) row.classList.add("new");
  if (event.stream_id === SYSTEM_STREAM) row.classList.add("system");
  if (event.event_type === HALT_EVENT) row.classList.add("halt");
  cell(row, String(event.sequence));
  cell(row, event.stream_id);
  cell(row, String(event.stream_version));
  cell(row, event.event_type);
  cell(row, event.recorded_at.replace("T", " ").slice(0, 19), "when");
  const hash = cell(row, short(event.hash), "hash");
  hash.title = event.hash;
  while (body.rows.length > RECENT) body.deleteRow(body.rows.length - 1);
  if (event.sequence > lastSequence) {
    lastSequence = event.sequence;
    $("head-sequence").textContent = String(event.sequence);
    $("head-hash").textContent = event.hash;
  }
  if (fresh && event.stream_id === SYSTEM_STREAM) refreshState();
}

async function loadChain() {
  const head = await api("head");
  $("head-sequence").textContent = String(head.sequence);
  $("head-hash").textContent = head.hash;
  const after = Math.max(0, head.sequence - RECENT);
  const page = await api(`events?after=${after}&limit=${RECENT}`);
  $("ledger-id").textContent = page.ledger_id;
  page.events.forEach((e) => showEvent(e, false));
  lastSequence = Math.max(lastSequence, head.sequence);
  return lastSequence;
}

// The live tail: Server-Sent Events read through fetch, so that the bearer token
// travels in the Authorization header (EventSource cannot send one).
async function tail(after) {
  if (tailAbort) tailAbort.abort();
  const abort = new AbortController();
  tailAbort = abort;
  while (!abort.signal.aborted) {
    try {
      const response = await fetch(new URL(`tail?after=${lastSequence || after}`, API),
        { headers: headers(), signal: abort.signal });
      if (!response.ok) throw new Error(`tail answered ${response.status}`);
      pill("tail-status", "tail: live", "ok");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          frame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (abort.signal.aborted) return;
    }
    pill("tail-status", "tail: reconnecting", "warn");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function frame(text) {
  let kind = "message";
  const data = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (kind === "event" && data.length) showEvent(JSON.parse(data.join("\n")), true);
  if (kind === "error") pill("tail-status", "tail: failed", "bad");
}

async function refreshState() {
  const state = await api("state");
  $("ledger-id").textContent = state.ledger_id;
  $("grant").textContent = state.grant_writer_id
    ? `${state.grant_writer_id}, epoch ${state.grant_epoch}` : "no writer granted";
  $("writer").textContent = `${state.writer_id}: ${state.writer_state}`;
  pill("writer-pill", `writer: ${state.writer_state}`, state.writer_state === "accepting" ? "ok" : "bad");
  const halt = $("halt-state");
  if (state.halted) {
    halt.textContent = `HALTED: ${state.halt_reason || "no reason given"}`;
    halt.className = "halted";
    pill("halt-pill", "halted", "bad");
  } else {
    halt.textContent = "not halted";
    halt.className = "";
    pill("halt-pill", "not halted", "ok");
  }
}

async function refreshReadiness() {
  const response = await fetch(new URL("readyz", ROOT));
  const body = await response.json();
  const checks = body.checks || body.error?.details?.checks || {};
  $("readiness").textContent = response.ok ? "ready"
    : `not ready: ${(body.error?.details?.reasons || []).join("; ")}`;
  const lease = checks.lease || "unknown";
  pill("lease-pill", `lease: ${lease}`, lease === "held" ? "ok" : "bad");
}

function showVerification(run) {
  const el = $("verification-status");
  if (!run) { el.textContent = "No verification has run since the service started."; el.className = ""; return; }
  const when = (run.finished_at || run.started_at).replace("T", " ").slice(0, 19);
  el.textContent = run.status === "running" ? `Running since ${when}…`
    : `${run.status.toUpperCase()} at ${when} UTC: ${run.summary || ""}`;
  el.className = run.status;
}

async function refreshVerification() {
  const list = await api("verifications");
  showVerification(list.runs[0]);
}

async function runVerification() {
  try {
    showVerification(await api("verifications", { method: "POST" }));
  } catch (error) { notice(`Verification not started: ${error.message}`); }
}

async function refreshCheckpoints() {
  const status = $("checkpoints-status");
  const list = $("checkpoint-list");
  let sequences;
  try {
    sequences = (await api("checkpoints")).sequences;
  } catch (error) {
    status.textContent = error.code === "checkpoints_not_configured"
      ? "This service has no checkpoint directory configured." : error.message;
    return;
  }
  status.textContent = sequences.length ? `${sequences.length} published; newest:` : "None published yet.";
  list.replaceChildren();
  for (const sequence of sequences.slice(0, 5)) {
    const cp = await api(`checkpoints/${sequence}`);
    const item = document.createElement("li");
    const cosigned = cp.cosigned_by.length ? `, cosigned by ${cp.cosigned_by.join(", ")}` : ", no cosignatures";
    item.textContent = `#${cp.sequence} at ${cp.time}: signed by ${cp.signed_by.join(", ") || "nobody trusted"}`
      + `${cosigned}${cp.trusted ? "" : ` (not trusted: ${cp.problem})`}`;
    list.append(item);
  }
}

function describeCeremony(c) {
  const what = { failover: `failover to ${c.target_writer_id}`, resume: `resume after the halt at ${c.halt_sequence}`,
    policy: "governance policy change" }[c.kind] || c.kind;
  const standing = c.status === "open"
    ? (c.blocker || `${c.witnesses} of ${c.threshold} witnesses, ready to execute`)
    : `${c.status} at sequence ${c.closed_seq}`;
  return `#${c.proposal_id} ${what}, proposed by ${c.proposed_by}; ${standing}`;
}

async function refreshCeremonies() {
  const found = (await api("ceremonies")).ceremonies;
  $("ceremonies-status").textContent = found.length ? "" : "No ceremony has been proposed.";
  const list = $("ceremony-list");
  list.replaceChildren();
  for (const c of found.slice(0, 10)) {
    const item = document.createElement("li");
    item.dataset.proposal = c.proposal_id;
    item.textContent = describeCeremony(c);
    const approvals = document.createElement("ul");
    for (const a of c.approvals) {
      const li = document.createElement("li");
      li.textContent = `key ${a.key_id} (${a.owner_id}) at ${a.approved_seq}: ${a.counts ? "counts" : a.problem}`;
      approvals.append(li);
    }
    item.append(approvals);
    list.append(item);
  }
}

async function poll() {
  await Promise.allSettled([refreshState(), refreshReadiness(), refreshVerification(),
    refreshCeremonies()]);
}

async function start() {
  notice("");
  $("events").replaceChildren();
  lastSequence = 0;
  try {
    const head = await loadChain();
    tail(head);
  } catch (error) {
    pill("tail-status", "tail: off", "warn");
  }
  await poll();
  refreshCheckpoints().catch(() => {});
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  start();
});
$("forget-token").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); start(); });
$("run-verification").addEventListener("click", runVerification);
setInterval(poll, POLL_MS);
start();
