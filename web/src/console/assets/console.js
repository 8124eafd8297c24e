// The Drover console: a page per hash route (#/jobs, #/jobs/ID, #/schedules,
// #/workers, #/cluster), each drawn from the JSON API and redrawn by polling.
// Plain DOM, no framework and no build step: the file is compiled into the
// coordinator binary as it is. Text from the cluster is only ever set as
// text (never as HTML), so a job name cannot inject markup.
"use strict";

// How often a page redraws; a hidden tab does not poll at all.
const POLL_MS = Number(new URLSearchParams(location.search).get("poll_ms")) || 2000;
// Events kept on a job page; older ones are a click on the CLI away.
const EVENTS_KEPT = 2000;
// Order of task states in bars and legends: done first, waiting last.
const STATES = ["succeeded", "skipped", "leased", "failed", "upstream_failed", "cancelled", "backoff", "ready", "blocked"];
const JOB_STATES = ["pending", "running", "succeeded", "failed", "cancelled"];

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replaces an element's children, skipping null and false (the DOM's own
// replaceChildren would write them out as text).
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// On a cluster that requires credentials the page asks for a token once
// per tab and keeps it in sessionStorage (gone when the tab closes); the
// console forwards it to the cluster, which checks it as it would the
// CLI's. A header, unlike a cookie, is never sent by another site's forms.
const TOKEN_KEY = "drover-token";

class NeedsToken extends Error {}

async function api(path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const init = body === undefined ? { headers } : {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch("/api/v1/" + path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401) throw new NeedsToken(message);
    throw new Error(message);
  }
  return data;
}

// The sign-in form, shown when the cluster refuses the page's requests.
function showLogin(message) {
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-why").textContent = message;
}

function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("login-token");
  const token = input.value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  input.value = "";
  document.getElementById("login").hidden = true;
  signOutLink();
  refresh();
}

function signOut(event) {
  event.preventDefault();
  sessionStorage.removeItem(TOKEN_KEY);
  signOutLink();
  refresh();
}

function signOutLink() {
  document.getElementById("sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

function showError(message) {
  const box = document.getElementById("error");
  box.hidden = !message;
  box.textContent = message || "";
}

function badge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, state);
}

function time(ms, timeZone) {
  if (!ms) return "—";
  const options = { dateStyle: "medium", timeStyle: "medium" };
  if (timeZone) options.timeZone = timeZone;
  try {
    return new Intl.DateTimeFormat(undefined, options).format(new Date(ms));
  } catch (_) {
    return new Date(ms).toISOString();
  }
}

function duration(ms) {
  if (ms === undefined || ms === null || ms < 0) return "—";
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${sec % 60} s`;
  if (sec < 86400) return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
  return `${Math.floor(sec / 86400)} d ${Math.floor((sec % 86400) / 3600)} h`;
}

function ago(ms) {
  return ms ? `${duration(Date.now() - ms)} ago` : "—";
}

// Milliseconds from a start to its finish (or now, while it runs); -1
// before it started, so unstarted rows sort first.
function span(startMs, finishMs) {
  if (!startMs) return -1;
  return (finishMs || Date.now()) - startMs;
}

function spanText(startMs, finishMs) {
  return startMs ? duration(span(startMs, finishMs)) : "—";
}

function jobDuration(j) {
  if (!j.started_ms) return "—";
  return duration((j.finished_ms || Date.now()) - j.started_ms);
}

function bar(counts) {
  const total = counts.total || 0;
  const el = h("div", { class: "bar", title: STATES.filter((k) => counts[k]).map((k) => `${k} ${counts[k]}`).join(", ") });
  if (!total) return el;
  for (const k of STATES) {
    if (!counts[k]) continue;
    const seg = h("span", { class: `seg-${k}` });
    seg.style.width = `${(100 * counts[k]) / total}%`;
    el.append(seg);
  }
  return el;
}

function progressText(counts) {
  const done = (counts.succeeded || 0) + (counts.skipped || 0);
  return `${done}/${counts.total || 0}`;
}

function legend() {
  return h("div", { class: "legend" }, STATES.map((k) => h("span", {}, h("i", { class: `seg-${k}` }), k)));
}

// A button that asks once more inline before acting (no modal dialogs, so
// it behaves the same for people and for browser tests). Which questions
// are open is kept here, so a redraw by the poller keeps them open.
const confirming = new Set();
function confirmButton(label, id, question, act) {
  if (!confirming.has(id)) {
    return h("button", { class: "danger", id, onclick: () => { confirming.add(id); refresh(); } }, label);
  }
  return h("span", { class: "confirm" }, question,
    h("button", { class: "danger solid", id: `${id}-confirm`, onclick: async (e) => {
      e.target.disabled = true;
      confirming.delete(id);
      try { await act(); showError(""); } catch (err) { showError(err.message); }
      refresh();
    } }, `Yes, ${label.toLowerCase()}`),
    h("button", { id: `${id}-dismiss`, onclick: () => { confirming.delete(id); refresh(); } }, "No"));
}

// A link that acts in the page (the CSP allows no `javascript:` URLs).
function action(text, act, attrs) {
  return h("a", { href: "#", ...(attrs || {}), onclick: (e) => { e.preventDefault(); act(); } }, text);
}

// A table whose columns sort on click; `columns` are {key, label, num,
// value(row) for sorting, cell(row)}. The sort survives redraws.
const sortState = {};
function sortableTable(name, columns, rows, rowAttrs) {
  const state = sortState[name] || {};
  const sorted = rows.slice();
  const col = columns.find((c) => c.key === state.key);
  if (col) {
    const v = col.value || ((r) => r[col.key]);
    sorted.sort((a, b) => {
      const x = v(a), y = v(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return state.desc ? -c : c;
    });
  }
  const head = h("tr", {}, columns.map((c) => h("th", {
    class: ["sortable", c.num ? "num" : "", state.key === c.key ? (state.desc ? "sorted-desc" : "sorted-asc") : ""].join(" "),
    "data-sort": c.key,
    onclick: () => {
      sortState[name] = { key: c.key, desc: state.key === c.key ? !state.desc : false };
      refresh();
    },
  }, c.label)));
  const body = sorted.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {},
    columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.cell ? c.cell(r) : r[c.key]))));
  return h("table", { id: `${name}-table` }, h("thead", {}, head), h("tbody", {}, body));
}

// ---- routing and polling ----

let current = null;   // the page object being shown
let timer = null;
let drawing = false;
let again = false;    // a redraw was asked for while one was running

const pages = {
  jobs: () => jobsPage("jobs"),
  schedules: () => jobsPage("schedules"),
  job: (id) => jobPage(id),
  workers: () => workersPage(),
  cluster: () => clusterPage(),
};

function route() {
  const path = location.hash.replace(/^#\/?/, "").split("?")[0] || "jobs";
  const parts = path.split("/").map(decodeURIComponent);
  const [name, id] = parts;
  const page = name === "jobs" && id ? pages.job(id) : (pages[name] || pages.jobs)();
  document.querySelectorAll("header nav a").forEach((a) => {
    a.classList.toggle("active", a.dataset.nav === (name === "jobs" && id ? "jobs" : name));
  });
  current = page;
  const main = document.getElementById("main");
  fill(main, page.root);
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  if (drawing) { again = true; return; }
  drawing = true;
  again = false;
  const page = current;
  try {
    await Promise.all([page.draw(), banner()]);
    if (page === current) showError("");
  } catch (err) {
    if (err instanceof NeedsToken) showLogin(err.message);
    if (page === current) showError(err.message);
  } finally {
    drawing = false;
    if (again) refresh();
    else if (!document.hidden) timer = setTimeout(refresh, POLL_MS);
  }
}

document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", signOut);
  signOutLink();
  route();
});

// The node that served the page, and whether what it shows is forwarded.
async function banner() {
  const el = document.getElementById("node-banner");
  try {
    const n = await api("node");
    let text;
    if (n.is_leader) text = `node ${n.id} · leader · term ${n.term}`;
    else if (n.leader_id) text = `node ${n.id} · follower · reads forwarded to leader ${n.leader_id} · term ${n.term}`;
    else text = `node ${n.id} · no leader known: the cluster cannot answer right now`;
    el.textContent = `${text} · v${n.version}`;
    el.classList.toggle("warn", !n.leader_id);
  } catch (err) {
    el.textContent = `this coordinator does not answer: ${err.message}`;
    el.classList.add("warn");
  }
}

// ---- jobs and schedules ----

function jobsPage(kind) {
  const schedules = kind === "schedules";
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const namespace = h("input", { id: "filter-namespace", placeholder: "namespace", value: params.get("namespace") || "" });
  const name = h("input", { id: "filter-name", placeholder: "name starts with", value: params.get("name") || "" });
  const state = h("select", { id: "filter-state" }, h("option", { value: "" }, "any state"),
    JOB_STATES.map((st) => h("option", { value: st }, st)));
  state.value = params.get("state") || "";
  const parent = params.get("parent") || "";
  for (const input of [namespace, name, state]) {
    input.addEventListener(input.tagName === "SELECT" ? "change" : "input", () => refresh());
  }
  const list = h("div", { id: "job-list" });
  const more = h("div", { class: "actions" });
  const title = schedules ? "Schedules" : parent ? `Runs of ${parent}` : "Jobs";
  const root = h("div", {}, h("h1", {}, title),
    h("div", { class: "filters" }, namespace, name, schedules ? null : state), list, more);

  async function draw() {
    const q = new URLSearchParams({ kind: schedules ? "schedules" : "jobs" });
    if (namespace.value) q.set("namespace", namespace.value);
    if (name.value) q.set("name", name.value);
    if (state.value && !schedules) q.set("state", state.value);
    if (parent) q.set("parent", parent);
    const page = await api(`jobs?${q}`);
    const rows = page.jobs;
    fill(list, schedules ? scheduleTable(rows) : jobTable(rows));
    fill(more, page.next_page_token
      ? h("span", { class: "muted" }, `Showing the newest ${rows.length}; narrow the filters to find older ones.`)
      : h("span", { class: "muted" }, `${rows.length} ${schedules ? "schedules" : "jobs"}`));
  }
  return { root, draw };
}

function jobLink(j) {
  return h("a", { href: `#/jobs/${encodeURIComponent(j.id)}`, class: "job-link", "data-job-id": j.id }, j.name || j.id);
}

function jobTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No jobs match.");
  return sortableTable("jobs", [
    { key: "name", label: "Name", cell: jobLink },
    { key: "id", label: "Id", cell: (j) => h("code", {}, j.id) },
    { key: "namespace", label: "Namespace" },
    { key: "state", label: "State", cell: (j) => badge(j.state) },
    { key: "progress", label: "Progress", value: (j) => (j.counts.succeeded + j.counts.skipped) / (j.counts.total || 1),
      cell: (j) => h("div", {}, bar(j.counts), h("span", { class: "muted" }, progressText(j.counts))) },
    { key: "priority", label: "Priority", num: true },
    { key: "created_ms", label: "Submitted", num: true, cell: (j) => time(j.created_ms) },
    { key: "duration", label: "Duration", num: true, value: (j) => j.started_ms ? (j.finished_ms || Date.now()) - j.started_ms : -1, cell: jobDuration },
  ], rows, (j) => ({ "data-job-row": j.id }));
}

function scheduleTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No schedules. A spec with a `schedule:` creates one.");
  return sortableTable("schedules", [
    { key: "name", label: "Name", cell: jobLink },
    { key: "namespace", label: "Namespace" },
    { key: "cron", label: "Cron", value: (j) => j.schedule.cron, cell: (j) => h("code", {}, j.schedule.cron) },
    { key: "timezone", label: "Time zone", value: (j) => j.schedule.timezone, cell: (j) => j.schedule.timezone },
    { key: "next", label: "Next fire times (in the schedule's zone)", value: (j) => j.schedule.next_fire_ms[0] || 0,
      cell: (j) => h("div", { class: "next-fires" }, j.schedule.next_fire_ms.slice(0, 3).map((ms) => h("div", {}, time(ms, j.schedule.timezone)))) },
    { key: "last", label: "Last fire", value: (j) => j.schedule.last_fire_ms, cell: (j) => time(j.schedule.last_fire_ms, j.schedule.timezone) },
    { key: "runs", label: "Runs", num: true, value: (j) => j.schedule.run_count,
      cell: (j) => h("a", { href: `#/jobs?parent=${encodeURIComponent(j.id)}` }, String(j.schedule.run_count)) },
    { key: "state", label: "State", cell: (j) => badge(j.state) },
  ], rows, (j) => ({ "data-schedule-row": j.id }));
}

// ---- one job ----

function jobPage(id) {
  const head = h("div", { id: "job-head" });
  const dag = h("div", { class: "panel", id: "dag" });
  const templates = h("div", { id: "templates" });
  const taskFilter = { template: "", state: "" };
  const tasks = h("div", { id: "tasks" });
  const detail = h("div", { id: "task-detail" });
  const timeline = h("div", { class: "panel timeline", id: "events" });
  const runs = h("div", { id: "runs" });
  const view = { events: [], afterSeq: 0, selectedTask: "", job: null };
  const templateSelect = h("select", { id: "task-template", onchange: (e) => { taskFilter.template = e.target.value; refresh(); } });
  const stateSelect = h("select", { id: "task-state", onchange: (e) => { taskFilter.state = e.target.value; refresh(); } },
    h("option", { value: "" }, "any state"), STATES.map((st) => h("option", { value: st }, st)));
  const root = h("div", {}, head, runs,
    h("div", { id: "graph-section" }, h("h2", {}, "Graph"), dag, templates),
    h("div", { class: "split", id: "task-section" },
      h("div", {}, h("h2", {}, "Tasks"), h("div", { class: "filters" }, templateSelect, stateSelect), tasks),
      h("div", {}, h("h2", {}, "Task"), detail)),
    h("h2", {}, "Events"), timeline);

  async function draw() {
    const job = await api(`jobs/${encodeURIComponent(id)}`);
    view.job = job;
    drawHead(job);
    if (job.schedule) {
      // A scheduled job runs no tasks itself; its runs do.
      root.querySelector("#graph-section").hidden = true;
      root.querySelector("#task-section").hidden = true;
      const page = await api(`jobs?parent=${encodeURIComponent(id)}`);
      fill(runs, h("h2", {}, "Runs"), jobTable(page.jobs));
    } else {
      drawGraph(job);
      drawTemplates(job);
      await drawTasks(job);
    }
    await drawEvents();
    if (view.selectedTask) await drawDetail(view.selectedTask);
  }

  function drawHead(j) {
    const terminal = ["succeeded", "failed", "cancelled"].includes(j.state);
    const failedTasks = j.counts.failed + j.counts.upstream_failed + j.counts.cancelled;
    const facts = [
      ["Id", h("code", {}, j.id)], ["Namespace", j.namespace], ["Priority", j.priority],
      ["Submitted", time(j.created_ms)], ["Started", time(j.started_ms)], ["Finished", time(j.finished_ms)],
      ["Duration", jobDuration(j)], ["Max parallel", j.max_parallel || "no limit"], ["Source", j.source_name || "—"],
    ];
    if (j.parent_job_id) facts.push(["Run of", h("a", { href: `#/jobs/${encodeURIComponent(j.parent_job_id)}` }, j.parent_job_id)], ["Fire time", time(j.fire_ms)]);
    if (j.schedule) {
      const sc = j.schedule;
      facts.push(["Cron", h("code", {}, `${sc.cron} (${sc.timezone})`)], ["Catch-up", `${sc.catchup} (max ${sc.max_catchup})`],
        ["Overlap", sc.overlap], ["Last fire", time(sc.last_fire_ms, sc.timezone)],
        ["Next fires", h("div", { class: "next-fires" }, sc.next_fire_ms.map((ms) => h("div", {}, time(ms, sc.timezone))))]);
    }
    const actions = h("div", { class: "actions" },
      terminal ? null : confirmButton(j.schedule ? "Cancel schedule" : "Cancel job", "cancel-job",
        j.schedule ? "Stop all future runs?" : "Cancel the job and stop its running tasks?",
        () => api(`jobs/${encodeURIComponent(j.id)}/cancel`, { reason: "cancelled from the web console" })),
      failedTasks && !j.schedule ? h("button", { class: "primary", id: "retry-job", onclick: async (e) => {
        e.target.disabled = true;
        try { await api(`jobs/${encodeURIComponent(j.id)}/retry`, {}); } catch (err) { showError(err.message); }
        refresh();
      } }, `Retry ${failedTasks} failed task${failedTasks === 1 ? "" : "s"}`) : null);
    fill(head, 
      h("h1", {}, j.name, " ", h("span", { id: "job-state" }, badge(j.state))),
      j.state_reason ? h("p", { id: "job-reason" }, j.state_reason) : null,
      h("div", { class: "panel" }, h("dl", { class: "kv" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        h("div", { class: "muted" }, bar(j.counts), ` ${progressText(j.counts)} tasks done`)),
      actions);
  }

  // A template's colour: the most pressing state among its tasks.
  function templateLook(c) {
    if (c.failed || c.upstream_failed) return "failed";
    if (c.leased) return "running";
    if (c.backoff) return "backoff";
    if (c.cancelled && c.cancelled + c.succeeded + c.skipped === c.total) return "cancelled";
    if (c.total && c.succeeded + c.skipped === c.total) return c.skipped === c.total ? "skipped" : "succeeded";
    if (c.ready) return "ready";
    return "waiting";
  }

  function drawGraph(j) {
    const g = j.graph;
    if (!g) { fill(dag, h("p", { class: "muted" }, "No tasks.")); return; }
    const byName = Object.fromEntries(j.templates.map((t) => [t.name, t]));
    const svg = s("svg", { class: "dag", width: g.width, height: g.height, viewBox: `0 0 ${g.width} ${g.height}`, role: "img", "aria-label": `DAG of ${j.name}` },
      s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa4b5" }))),
      g.edges.map((e) => s("path", { class: "edge", d: e.path, "data-from": e.from, "data-to": e.to })),
      g.nodes.map((n) => {
        const t = byName[n.name] || { counts: { total: 0 }, kind: "", partitions: 0 };
        const look = templateLook(t.counts);
        const done = t.counts.succeeded + t.counts.skipped;
        const segs = [];
        let x = n.x + 10;
        const width = n.w - 20;
        for (const k of STATES) {
          if (!t.counts[k] || !t.counts.total) continue;
          const w = (width * t.counts[k]) / t.counts.total;
          segs.push(s("rect", { x, y: n.y + n.h - 16, width: w, height: 6, class: `seg-${k}` }));
          x += w;
        }
        return s("g", { class: `node node-${look}${taskFilter.template === n.name ? " selected" : ""}`, "data-template": n.name, "data-look": look,
          onclick: () => { taskFilter.template = taskFilter.template === n.name ? "" : n.name; refresh(); } },
          s("title", {}, `${n.name}: ${STATES.filter((k) => t.counts[k]).map((k) => `${k} ${t.counts[k]}`).join(", ")}`),
          s("rect", { class: "box", x: n.x, y: n.y, width: n.w, height: n.h }),
          s("rect", { class: "status", x: n.x, y: n.y, width: 6, height: n.h }),
          s("text", { x: n.x + 14, y: n.y + 20 }, n.name.length > 26 ? n.name.slice(0, 25) + "…" : n.name),
          s("text", { class: "sub", x: n.x + 14, y: n.y + 36 }, `${t.kind} · ${done}/${t.counts.total} done`),
          s("rect", { class: "track", x: n.x + 10, y: n.y + n.h - 16, width, height: 6 }),
          segs);
      }));
    fill(dag, svg, legend());
  }

  function drawTemplates(j) {
    fill(templates, sortableTable("templates", [
      { key: "name", label: "Template", cell: (t) => action(t.name, () => { taskFilter.template = t.name; refresh(); }) },
      { key: "kind", label: "Kind" },
      { key: "stage", label: "Stage", num: true },
      { key: "partitions", label: "Partitions", num: true },
      { key: "progress", label: "Progress", value: (t) => (t.counts.succeeded + t.counts.skipped) / (t.counts.total || 1),
        cell: (t) => h("div", { "data-template-progress": t.name }, bar(t.counts), h("span", { class: "muted" }, progressText(t.counts))) },
      { key: "depends_on", label: "Depends on", cell: (t) => t.depends_on.join(", ") || "—" },
      { key: "started_ms", label: "Started", cell: (t) => time(t.started_ms) },
      { key: "duration", label: "Duration", num: true, value: (t) => span(t.started_ms, t.finished_ms), cell: (t) => spanText(t.started_ms, t.finished_ms) },
    ], j.templates));
    const options = [h("option", { value: "" }, "every template"), ...j.templates.map((t) => h("option", { value: t.name }, t.name))];
    if (templateSelect.options.length !== options.length) fill(templateSelect, ...options);
    templateSelect.value = taskFilter.template;
  }

  async function drawTasks() {
    const q = new URLSearchParams({ page_size: "200" });
    if (taskFilter.template) q.set("template", taskFilter.template);
    if (taskFilter.state) q.set("state", taskFilter.state);
    const page = await api(`jobs/${encodeURIComponent(id)}/tasks?${q}`);
    const table = sortableTable("tasks", [
      { key: "task", label: "Task", value: (t) => `${t.template}/${String(t.partition).padStart(12, "0")}`,
        cell: (t) => h("span", {}, t.template, " ", h("span", { class: "muted" }, t.partition_key || `#${t.partition}`)) },
      { key: "state", label: "State", cell: (t) => badge(t.state) },
      { key: "attempt", label: "Attempt", num: true, cell: (t) => t.attempt ? `${t.attempt}/${t.max_attempts}` : "—" },
      { key: "worker_id", label: "Worker", cell: (t) => t.worker_id ? h("code", {}, t.worker_id) : "—" },
      { key: "started_ms", label: "Started", cell: (t) => time(t.started_ms) },
      { key: "duration", label: "Duration", num: true, value: (t) => span(t.started_ms, t.finished_ms), cell: (t) => spanText(t.started_ms, t.finished_ms) },
      { key: "note", label: "Note", value: (t) => t.last_error || t.progress_message || "", cell: taskNote },
      { key: "progress", label: "Progress", num: true, cell: (t) => t.state === "leased" ? `${Math.round(t.progress * 100)}%` : "" },
    ], page.tasks, (t) => ({
      class: `clickable${t.id === view.selectedTask ? " selected" : ""}`, "data-task-id": t.id,
      onclick: () => { view.selectedTask = t.id; refresh(); },
    }));
    fill(tasks, page.tasks.length ? table : h("p", { class: "muted" }, "No tasks match."),
      page.next_page_token ? h("p", { class: "muted" }, "Showing the first 200; filter by template or state to see others.") : null);
  }

  // The one thing worth knowing about a task at a glance.
  function taskNote(t) {
    if (t.state === "leased") return `${t.progress_message || "running"} · lease ends ${duration(t.lease_deadline_ms - Date.now())} from now`;
    if (t.state === "backoff") return `retry at ${time(t.backoff_until_ms)}: ${t.last_error}`;
    if (t.last_error) return h("span", { title: t.last_error }, t.last_error.length > 80 ? t.last_error.slice(0, 79) + "…" : t.last_error);
    return "";
  }

  // Attempts of one task, from its events: lease, then how it ended.
  function attempts(events) {
    const by = new Map();
    for (const e of events) {
      if (!e.attempt) continue;
      const a = by.get(e.attempt) || { attempt: e.attempt, events: [] };
      a.events.push(e);
      if (e.kind === "task_leased") { a.leased = e.at_ms; a.worker = e.worker_id; a.token = e.fencing_token; }
      else { a.outcome = e.kind.replace(/^task_/, ""); a.ended = e.at_ms; a.message = e.message || a.message; }
      by.set(e.attempt, a);
    }
    return [...by.values()].sort((a, b) => a.attempt - b.attempt);
  }

  async function drawDetail(taskId) {
    const [why, ev] = await Promise.all([
      api(`task?id=${encodeURIComponent(taskId)}`),
      api(`jobs/${encodeURIComponent(id)}/events?task_id=${encodeURIComponent(taskId)}&limit=500`),
    ]);
    const t = why.task;
    const panel = h("div", { class: "panel", "data-task": taskId },
      h("dl", { class: "kv" },
        h("dt", {}, "Task"), h("dd", {}, h("code", {}, t.id)),
        h("dt", {}, "State"), h("dd", {}, badge(t.state)),
        h("dt", {}, "Partition"), h("dd", {}, t.partition_key || String(t.partition)),
        h("dt", {}, "Why not running"), h("dd", { id: "why-pending" }, why.summary),
        t.last_error ? [h("dt", {}, "Last error"), h("dd", {}, h("code", {}, t.last_error))] : null,
        t.progress_message ? [h("dt", {}, "Progress"), h("dd", {}, `${Math.round(t.progress * 100)}% ${t.progress_message}`)] : null,
        t.output_prefix ? [h("dt", {}, "Output"), h("dd", {}, action("manifest", () => showOutput(taskId), { id: "show-output" }), " ", h("code", {}, t.output_prefix))] : null),
      h("h2", {}, "Attempts"),
      h("table", { id: "attempts" }, h("thead", {}, h("tr", {}, ["#", "Worker", "Token", "Leased", "Outcome", "Message", "Log"].map((x) => h("th", {}, x)))),
        h("tbody", {}, attempts(ev.events).map((a) => h("tr", {},
          h("td", {}, a.attempt), h("td", {}, a.worker ? h("code", {}, a.worker) : "—"), h("td", { class: "num" }, a.token || "—"),
          h("td", {}, time(a.leased)), h("td", {}, a.outcome ? badge(outcomeState(a.outcome)) : badge("leased")),
          h("td", {}, a.message || ""),
          h("td", {}, a.token ? action("log", () => showLog(taskId, a.token), { class: "log-link", "data-token": a.token }) : "—"))))));
    if (view.output && view.output.taskId === taskId) panel.append(outputView(view.output));
    if (view.log && view.log.taskId === taskId) {
      // A running attempt's log grows: ask again on every refresh.
      if (!view.log.answer || view.log.answer.running) await loadLog(view.log);
      panel.append(logView(view.log));
    }
    fill(detail, panel);
  }

  function outcomeState(outcome) {
    return { succeeded: "succeeded", skipped: "skipped", failed: "failed", lease_expired: "backoff", timed_out: "failed",
      retry_scheduled: "backoff", released: "ready", cancelled: "cancelled", stale_token_rejected: "failed" }[outcome] || outcome;
  }

  async function showOutput(taskId) {
    try {
      view.output = { taskId, manifest: await api(`task/output?id=${encodeURIComponent(taskId)}`) };
    } catch (err) {
      view.output = { taskId, error: err.message };
    }
    refresh();
  }

  async function showLog(taskId, token) {
    view.log = { taskId, token };
    await loadLog(view.log);
    refresh();
  }

  async function loadLog(shown) {
    try {
      shown.answer = await api(`task/log?id=${encodeURIComponent(shown.taskId)}&token=${shown.token}`);
      shown.error = null;
    } catch (err) {
      shown.error = err.message;
    }
  }

  function logView(shown) {
    if (shown.error) return h("p", { class: "error", id: "task-log" }, shown.error);
    const l = shown.answer;
    return h("div", { id: "task-log", "data-token": l.fencing_token },
      h("h2", {}, `Log of attempt ${l.attempt} (token ${l.fencing_token})`),
      h("p", { class: "muted" }, "Worker ", l.worker_id ? h("code", {}, l.worker_id) : "—", ` (${l.worker_state})`,
        l.running ? " · running: refreshed as its worker stores it" : "",
        l.location ? [" · ", h("code", {}, l.location)] : null),
      l.note ? h("p", { class: "note", id: "log-note" }, l.note) : null,
      l.truncated ? h("p", { class: "muted" }, "Only the end of the log is shown.") : null,
      l.found ? h("pre", { class: "log mono", id: "log-text" }, l.text) : null);
  }

  function outputView(shown) {
    if (shown.error) return h("p", { class: "error", id: "output" }, shown.error);
    const o = shown.manifest;
    return h("div", { id: "output" }, h("h2", {}, "Output manifest"),
        h("dl", { class: "kv" },
          h("dt", {}, "Prefix"), h("dd", {}, h("code", {}, o.output_prefix || "—")),
          h("dt", {}, "Fencing token"), h("dd", {}, o.fencing_token),
          h("dt", {}, "Reused"), h("dd", {}, o.reused ? "yes (an identical earlier output)" : "no"),
          h("dt", {}, "Code version"), h("dd", {}, o.code_version || "—"),
          h("dt", {}, "Input fingerprint"), h("dd", {}, h("code", {}, o.input_fingerprint || "—"))),
        h("table", { id: "output-files" }, h("thead", {}, h("tr", {}, ["File", "Rows", "Bytes", "SHA-256"].map((x) => h("th", {}, x)))),
          h("tbody", {}, o.files.map((f) => h("tr", {}, h("td", {}, h("code", {}, f.path)), h("td", { class: "num" }, f.rows),
            h("td", { class: "num" }, f.bytes), h("td", {}, h("code", {}, f.sha256.slice(0, 16) + "…")))))),
        o.schema_json ? h("details", {}, h("summary", {}, "Schema"), h("pre", { class: "mono" }, o.schema_json)) : null);
  }

  async function drawEvents() {
    // Page forward from the last event seen; keep the newest EVENTS_KEPT.
    for (let i = 0; i < 10; i++) {
      const page = await api(`jobs/${encodeURIComponent(id)}/events?after_seq=${view.afterSeq}&limit=1000`);
      view.events.push(...page.events);
      view.afterSeq = page.next_after_seq || view.afterSeq;
      if (!page.more) break;
    }
    if (view.events.length > EVENTS_KEPT) view.events.splice(0, view.events.length - EVENTS_KEPT);
    fill(timeline, ...view.events.slice().reverse().map((e) => h("div", { class: "event", "data-kind": e.kind },
      h("span", { class: "muted" }, time(e.at_ms)),
      h("span", {}, badge(eventState(e.kind)), " ", e.kind.replace(/^(task|job)_/, "").replace(/_/g, " ")),
      h("span", {}, e.task_id ? action(`${e.template} ${e.partition}`, () => { view.selectedTask = e.task_id; refresh(); }) : null,
        e.attempt ? ` attempt ${e.attempt}` : "", e.worker_id ? ` on ${e.worker_id}` : "", e.message ? ` — ${e.message}` : ""))));
    if (!view.events.length) fill(timeline, h("p", { class: "muted" }, "No events yet."));
  }

  function eventState(kind) {
    if (/succeeded|skipped/.test(kind)) return kind.includes("skipped") ? "skipped" : "succeeded";
    if (/failed|stale|timed_out/.test(kind)) return "failed";
    if (/cancelled/.test(kind)) return "cancelled";
    if (/leased|started/.test(kind)) return "running";
    if (/expired|retry|backoff/.test(kind)) return "backoff";
    return "pending";
  }

  return { root, draw };
}

// ---- workers ----

function workersPage() {
  const list = h("div", { id: "worker-list" });
  const root = h("div", {}, h("h1", {}, "Workers"), list);
  async function draw() {
    const { workers } = await api("workers");
    if (!workers.length) { fill(list, h("p", { class: "muted" }, "No worker has registered.")); return; }
    fill(list, sortableTable("workers", [
      { key: "id", label: "Worker", cell: (w) => h("code", {}, w.id) },
      { key: "state", label: "State", cell: (w) => h("span", {}, badge(w.state), w.drain_reason ? h("div", { class: "muted" }, w.drain_reason) : null) },
      { key: "slots", label: "Slots", num: true, cell: (w) => `${w.running_tasks}/${w.slots} busy` },
      { key: "running", label: "Running tasks", value: (w) => w.running_tasks, cell: (w) => h("div", {}, w.running_task_ids.map((t) =>
          h("div", {}, h("a", { href: `#/jobs/${encodeURIComponent(t.split("/")[0])}` }, h("code", {}, t))))) },
      { key: "last_heartbeat_ms", label: "Last heartbeat", num: true, cell: (w) => ago(w.last_heartbeat_ms) },
      { key: "version", label: "Version" },
      { key: "labels", label: "Labels", value: (w) => JSON.stringify(w.labels), cell: (w) => Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(", ") || "—" },
      { key: "drain", label: "", value: () => 0, cell: (w) => w.state === "alive"
          ? confirmButton("Drain", `drain-${w.id}`, "Hand back its tasks and stop new leases?",
            () => api(`workers/${encodeURIComponent(w.id)}/drain`, { reason: "drained from the web console" }))
          : "" },
    ], workers, (w) => ({ "data-worker-row": w.id })));
  }
  return { root, draw };
}

// ---- cluster ----

function clusterPage() {
  const summary = h("div", { id: "cluster-summary" });
  const nodes = h("div", { id: "cluster-nodes" });
  const root = h("div", {}, h("h1", {}, "Cluster"), summary, h("h2", {}, "Members"), nodes);
  async function draw() {
    const c = await api("cluster");
    const here = c.answered_by;
    const leader = c.leader;
    const sched = leader && leader.scheduler;
    fill(summary, h("div", { class: "panel" }, h("dl", { class: "kv" },
      h("dt", {}, "Leader"), h("dd", { id: "cluster-leader" }, here.leader_id ? `node ${here.leader_id} (${here.leader_address})` : "none known"),
      h("dt", {}, "Term"), h("dd", {}, here.term),
      h("dt", {}, "Served by"), h("dd", {}, `node ${here.id}${here.id === here.leader_id ? " (the leader)" : ""}`),
      sched ? [
        h("dt", {}, "Ready tasks"), h("dd", {}, `${sched.ready_tasks} (oldest waiting ${duration(sched.oldest_ready_age_ms)})`),
        h("dt", {}, "Leased tasks"), h("dd", {}, sched.leased_tasks),
        h("dt", {}, "Workers"), h("dd", {}, `${sched.alive_workers} alive, ${sched.free_slots}/${sched.total_slots} slots free`),
      ] : null)));
    const view = Object.fromEntries(((leader && leader.members) || []).map((m) => [m.id, m]));
    fill(nodes, h("table", { id: "members-table" },
      h("thead", {}, h("tr", {}, ["Node", "Address", "Role", "Term", "Commit", "Applied", "Lag (entries)", "Last contact", "Last fsync", "Checkpoint", "Version"]
        .map((x) => h("th", {}, x)))),
      h("tbody", {}, c.nodes.map((n) => {
        const st = n.status;
        const m = view[n.id] || {};
        if (!st) return h("tr", { "data-node": n.id }, h("td", {}, n.id), h("td", {}, h("code", {}, n.address)), h("td", { colspan: 9, class: "error" }, n.error));
        const role = st.id === st.leader_id ? "leader" : (m.role || (here.members.find((x) => x.id === n.id) || {}).role || "");
        return h("tr", { "data-node": n.id },
          h("td", {}, n.id), h("td", {}, h("code", {}, n.address)), h("td", {}, role === "leader" ? h("span", { class: "badge state-succeeded" }, "leader") : role),
          h("td", { class: "num" }, st.term), h("td", { class: "num" }, st.commit_index), h("td", { class: "num" }, st.applied_index),
          h("td", { class: "num" }, st.id === st.leader_id ? "—" : (m.lag_entries ?? "—")),
          h("td", { class: "num" }, st.id === st.leader_id ? "—" : (m.last_contact_age_ms !== undefined ? `${m.last_contact_age_ms} ms ago` : "—")),
          h("td", { class: "num" }, `${(st.last_fsync_us / 1000).toFixed(2)} ms`),
          h("td", { class: "num" }, st.snapshot_index), h("td", {}, st.version));
      }))));
  }
  return { root, draw };
}
