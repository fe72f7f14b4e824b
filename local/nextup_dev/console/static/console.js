// The nextup dev console: plain DOM, no build step. Every view reads JSON from /ui/api and
// redraws when the server-sent stream says something changed.
"use strict";

const main = document.getElementById("main");
let view = null; // {name, arg, live: bool, draw: async () => void}
let drawing = false;
let again = false;

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch("/ui/api" + path, init);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

const clock = (at) => at ? new Date(at * 1000).toLocaleTimeString() : "";
const badge = (word) => h("span", {class: "badge " + word}, word);
const json = (value) => h("pre", {}, JSON.stringify(value, null, 2));
const table = (heads, rows) => h("table", {},
  h("thead", {}, h("tr", {}, heads.map((x) => h("th", {}, x)))), h("tbody", {}, rows));

// Someone is typing: a field of the page has focus and was edited in the last moments.
// Focus alone is not enough: after Enter the cursor stays in the filter, and the view it
// filters must go on updating.
const QUIET_MS = 1200;
let lastEdit = 0;
let missed = false;
main.addEventListener("input", () => { lastEdit = Date.now(); });
main.addEventListener("keydown", () => { lastEdit = Date.now(); });

function typing() {
  return focusedField() !== null && Date.now() - lastEdit < QUIET_MS;
}

// A live change that came while someone typed is drawn once they pause, not dropped.
function liveRedraw() {
  if (!view || !view.live) return;
  if (!typing()) { redraw(false); return; }
  if (!missed) {
    missed = true;
    setTimeout(() => { missed = false; liveRedraw(); }, QUIET_MS);
  }
}

// The page anew, keeping the focused field as it was (value, cursor, focus). Focus, not
// `typing()`: a value typed and left for a while (or a slow machine between a keystroke and
// Enter) is still what the person means, and a redraw must not hand them an empty field.
function focusedField() {
  const el = document.activeElement;
  return el && main.contains(el) && ["TEXTAREA", "INPUT", "SELECT"].includes(el.tagName) ? el : null;
}

function replace(content) {
  const el = focusedField();
  const kept = el && el.name ? {name: el.name, value: el.value, from: el.selectionStart,
    to: el.selectionEnd} : null;
  main.replaceChildren(content);
  const again = kept && main.querySelector(`[name="${CSS.escape(kept.name)}"]`);
  if (again) {
    again.value = kept.value;
    again.focus();
    try { again.setSelectionRange(kept.from, kept.to); } catch { /* not a text field */ }
  }
}

// `forced` when the person asked (navigation, a button); a live update never replaces
// the page under someone typing into it: it waits for the next change.
async function redraw(forced = true) {
  if (!view) return;
  if (drawing) { again = again === true || forced ? true : "live"; return; }
  drawing = true;
  try {
    const content = await view.draw();
    if (content && (forced || !typing())) replace(content);
    else if (content) liveRedraw();  // held back under someone typing: drawn when they pause
  } catch (error) {
    replace(h("p", {class: "note failed"}, String(error.message || error)));
  } finally {
    drawing = false;
    if (again) { const next = again === true; again = false; redraw(next); }
  }
}

// Timeline

const filters = {type: "", user: "", id: "", outcome: ""};

async function drawTimeline() {
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  const t = await api("/timeline?" + query);
  const field = (name, label, input) => h("label", {}, label, input);
  const text = (name, list) => h("input", {
    name, value: filters[name], list: list || null, placeholder: "any",
    onchange: (e) => { filters[name] = e.target.value.trim(); redraw(); },
  });
  const outcome = h("select", {name: "outcome", onchange: (e) => {
    filters.outcome = e.target.value; redraw(); }},
    ["", "pending", "delivered", "retrying", "dead-lettered", "dropped", "unrouted"].map(
      (o) => h("option", {value: o, selected: o === filters.outcome}, o || "any")));
  const form = h("form", {class: "bar", onsubmit: (e) => e.preventDefault()},
    field("type", "type", text("type", "types")), field("user", "user", text("user", "users")),
    field("id", "id", text("id")), field("outcome", "outcome", outcome),
    h("datalist", {id: "types"}, t.types.map((x) => h("option", {value: x}))),
    h("datalist", {id: "users"}, t.users.map((x) => h("option", {value: x}))),
    h("span", {class: "muted"}, `${t.events.length} shown of ${t.kept} kept (the last 10,000)`));
  const rows = t.events.map((e) => h("tr", {class: "row", "data-ref": e.ref,
    onclick: () => { location.hash = "#event/" + e.ref; }},
    h("td", {}, clock(e.at)), h("td", {}, e.kind), h("td", {class: "mono"}, e.type),
    h("td", {class: "mono"}, e.id), h("td", {}, e.user || ""), h("td", {}, badge(e.outcome)),
    h("td", {class: "muted"}, e.triggers.join(", "))));
  return h("section", {id: "timeline"}, h("h2", {}, "Timeline"), form,
    rows.length ? table(["time", "in as", "type", "id", "user", "outcome", "delivered by"], rows)
      : h("p", {class: "muted"}, "Nothing yet: send an event (Send) or `nextup emit`."));
}

function attemptsTable(attempts) {
  return table(["#", "status", "ms", "outcome", "answer"], attempts.map((a) => h("tr", {},
    h("td", {}, a.attempt), h("td", {}, a.status ?? "-"), h("td", {}, a.ms),
    h("td", {}, badge(a.outcome), a.retry_in ? ` again in ${a.retry_in} s` : ""),
    h("td", {class: "mono"}, a.error || (a.body ? JSON.stringify(a.body).slice(0, 300) : ""),
      a.reply ? h("div", {}, "replied: ", h("a", {href: "#event/" + a.reply}, "event")) : ""))));
}

function chainNode(node) {
  const head = h("div", {class: "head"},
    h("a", {href: "#event/" + node.ref, class: "mono"}, node.type), " ",
    h("span", {class: "muted mono"}, node.id), " ", badge(node.outcome), " ",
    h("span", {class: "muted"}, `${node.kind} ${clock(node.at)}`),
    node.data === null || node.data === undefined ? ""
      : h("div", {class: "muted mono data"}, JSON.stringify(node.data).slice(0, 240)));
  const deliveries = node.deliveries.map((d) => h("li", {class: "delivery"},
    h("div", {}, "→ ", h("strong", {}, d.trigger), d.function ? ` (${d.function})` : "", " ",
      badge(d.outcome), ` ${d.attempts.length} attempt${d.attempts.length === 1 ? "" : "s"}`,
      d.schedule ? h("span", {class: "muted schedule"}, ` · ${d.schedule}`) : ""),
    attemptsTable(d.attempts),
    d.produced.length ? h("ul", {}, d.produced.map(chainNode)) : ""));
  const mails = node.mails.map((m) => h("li", {class: "mail"},
    "✉ mail kept: ", h("span", {class: "mono"}, m.name), ` to ${m.to || "?"}: ${m.subject || ""}`));
  return h("li", {class: "node" + (node.selected ? " selected" : ""), "data-type": node.type},
    head, h("ul", {}, deliveries, mails, node.children.map(chainNode)));
}

async function drawEvent(ref) {
  const {event, chain} = await api("/events/" + encodeURIComponent(ref));
  return h("section", {id: "event"},
    h("p", {}, h("a", {href: "#timeline"}, "← timeline")),
    h("h2", {}, event.type, " ", badge(event.outcome)),
    event.deliveries.some((d) => d.attempts.some((a) => a.outcome === "dead-lettered"))
      ? h("p", {}, h("a", {id: "to-dead-letter", href: "#deadletters/" + encodeURIComponent(event.id)},
        "Its dead letter: why it failed, and re-drive it")) : "",
    h("div", {class: "two"},
      h("div", {}, h("h3", {}, "Attributes"), json(event.attributes)),
      h("div", {}, h("h3", {}, "Data"), json(event.data))),
    h("h3", {}, "Causal chain", chain.trace ? h("span", {class: "muted mono"}, ` trace ${chain.trace}`) : ""),
    h("ul", {class: "chain"}, chain.roots.map(chainNode)));
}

// Dead letters

const pick = {id: "", type: "", status: "", since: "", until: "", all: false};
let planned = null;
let inspected = null;
const drafts = {}; // dead-letter file -> its data as being edited, kept across redraws

async function redrive(body, dryRun) {
  planned = await api("/deadletters/redrive", {...body, dry_run: dryRun});
  redraw();
}

function planView(plan) {
  return h("div", {class: "note", id: "plan"},
    h("strong", {}, plan.dry_run ? "Dry run: nothing sent" : "Re-driven onto the broker"),
    plan.letters.length ? table(["id", "type", "was", "goes to", "already handled?", "posted"],
      plan.letters.map((l) => h("tr", {class: "plan"},
        h("td", {class: "mono"}, l.id), h("td", {class: "mono"}, l.type), h("td", {}, l.status ?? ""),
        h("td", {}, l.triggers.length ? l.triggers.map((t) =>
          h("div", {}, `${t.trigger} → ${t.function || t.uri}`)) : h("span", {class: "unrouted"}, "no Trigger matches")),
        h("td", {}, l.handled ? `yes: receipt ${l.handled.status}` : "no receipt"),
        h("td", {}, l.posted === undefined ? "-" : String(l.posted)))))
      : h("p", {}, "No dead letter matches."));
}

async function drawDeadLetters() {
  const {letters} = await api("/deadletters");
  const input = (name, label, attrs) => h("label", {}, label, h("input", {name, value: pick[name],
    ...attrs, onchange: (e) => { pick[name] = e.target.value.trim(); }}));
  const selection = () => Object.fromEntries(Object.entries(pick).filter(([, v]) => v));
  const form = h("form", {class: "bar", onsubmit: (e) => e.preventDefault()},
    input("type", "type", {placeholder: "any"}), input("status", "status code", {size: 5}),
    input("since", "since", {placeholder: "2026-12-01T08:00"}),
    input("until", "until", {placeholder: "ISO time"}),
    h("label", {}, "all", h("input", {type: "checkbox", name: "all", checked: pick.all,
      onchange: (e) => { pick.all = e.target.checked; }})),
    h("button", {class: "plain", id: "dry-run-many", onclick: () => redrive(selection(), true)}, "Dry run"),
    h("button", {id: "redrive-many", onclick: () => redrive(selection(), false)}, "Re-drive"));
  const rows = letters.map((l) => h("tr", {class: "row", "data-id": l.attributes.id,
    onclick: () => { inspected = l.file; planned = null; redraw(); }},
    h("td", {}, clock(l.at)), h("td", {class: "mono"}, l.attributes.type),
    h("td", {class: "mono"}, l.attributes.id), h("td", {}, l.error.status ?? "-"),
    h("td", {class: "mono"}, l.error.destination || ""),
    h("td", {}, l.redriven ? badge("re-driven") : "")));
  if (view.arg && !inspected) {  // #deadletters/<event id>: that event's newest letter
    const wanted = letters.find((l) => l.attributes.id === view.arg);
    if (wanted) inspected = wanted.file;
  }
  const letter = letters.find((l) => l.file === inspected);
  let detail = "";
  if (letter) {
    const editor = h("textarea", {id: "letter-data", name: "letter-data",
      oninput: (e) => { drafts[letter.file] = e.target.value; }},
      drafts[letter.file] ?? JSON.stringify(letter.data, null, 2));
    const dataOf = () => JSON.parse(editor.value);
    detail = h("div", {class: "card", id: "letter"},
      h("h3", {}, "Dead letter ", h("span", {class: "mono"}, letter.attributes.id)),
      table(["knativeerrorcode", "knativeerrordest", "file"], [h("tr", {},
        h("td", {}, letter.attributes.knativeerrorcode || ""),
        h("td", {class: "mono"}, letter.attributes.knativeerrordest || ""),
        h("td", {class: "mono"}, letter.file))]),
      h("h3", {}, "Answer (knativeerrordata, decoded)"), json(letter.error.body),
      h("div", {class: "two"}, h("div", {}, h("h3", {}, "Attributes"), json(letter.attributes)),
        h("div", {}, h("h3", {}, "Data (edit to fix, then re-drive)"), editor)),
      h("p", {}, h("button", {class: "plain", id: "dry-run-one",
        onclick: () => redrive({id: letter.attributes.id, data: dataOf()}, true)}, "Dry run"), " ",
      h("button", {id: "redrive-one",
        onclick: () => redrive({id: letter.attributes.id, data: dataOf()}, false)}, "Re-drive this one")));
  }
  return h("section", {id: "deadletters"}, h("h2", {}, "Dead letters"),
    h("p", {class: "muted"}, "Events a function refused or that ran out of retries. Select many below, or click one to inspect and fix it."),
    form, planned ? planView(planned) : "", detail,
    rows.length ? table(["when", "type", "id", "status", "destination", ""], rows)
      : h("p", {class: "muted"}, "No dead letters."));
}

// State

let stateUser = "";

async function drawState() {
  const data = stateUser ? await api("/state?user=" + encodeURIComponent(stateUser)) : null;
  const known = data ? [] : (await api("/state")).users;
  const form = h("form", {class: "bar", onsubmit: (e) => {
    e.preventDefault(); stateUser = e.target.user.value.trim(); location.hash = "#state/" + encodeURIComponent(stateUser); }},
    h("label", {}, "user", h("input", {name: "user", value: stateUser, list: "state-users"})),
    h("datalist", {id: "state-users"}, known.map((u) => h("option", {value: u}))),
    h("button", {}, "Show"));
  if (!data) return h("section", {id: "state"}, h("h2", {}, "State"), form,
    known.length ? h("p", {}, "Users seen: ", known.map((u) => h("a", {href: "#state/" + encodeURIComponent(u),
      style: "margin-right:.6rem"}, u))) : "");
  const series = data.series.map((s) => h("div", {class: "card series"},
    h("h3", {}, s.title || s.series_id, " ", h("span", {class: "muted mono"}, s.recurrence || "once")),
    h("p", {}, "next due: ", h("strong", {class: "next-due"}, s.next_due || "none")),
    table(["#", "task", "status", "due", "done"], s.occurrences.map((o) => h("tr", {},
      h("td", {}, o.occurrence), h("td", {class: "mono"}, o.task_id), h("td", {}, badge(o.status)),
      h("td", {}, o.due_at || ""), h("td", {}, o.completed_at || o.skipped_at || ""))))));
  const reminders = data.reminders.map((r) => h("tr", {class: "reminder"},
    h("td", {class: "mono"}, r.task_id), h("td", {}, badge(r.status)), h("td", {}, r.remind_at),
    h("td", {}, r.channel || ""), h("td", {}, r.sent_at || r.failed_at || ""),
    h("td", {}, r.error || "")));
  return h("section", {id: "state"}, h("h2", {}, "State of ", h("span", {class: "mono"}, data.user)), form,
    h("p", {}, h("a", {href: "#timeline", onclick: () => { filters.user = data.user; }},
      "Their events in the timeline")),
    series.length ? h("div", {class: "grid"}, series) : h("p", {class: "muted"}, "No tasks."),
    h("h3", {}, "Reminders"), reminders.length
      ? table(["task", "state", "remind at", "channel", "when", "why"], reminders)
      : h("p", {class: "muted"}, "No reminders."));
}

// Functions

async function drawFunctions() {
  const {functions, scale_to_zero} = await api("/functions");
  return h("section", {id: "functions"}, h("h2", {}, "Functions"),
    h("p", {class: "muted"}, scale_to_zero ? "Scale to zero: each starts on its first event." : "Always up (start nextup dev with --scale-to-zero to see cold starts)."),
    h("div", {class: "grid"}, functions.map((f) => h("div", {class: "card function", "data-name": f.name},
      h("h3", {}, f.name, " ", badge(f.state)),
      h("p", {class: "muted"}, `port ${f.port}, pid ${f.pid ?? "-"}, cold starts ${f.cold_starts}`,
        f.start_ms.length ? `, started in ${f.start_ms.join(", ")} ms` : ""),
      h("pre", {}, f.log.trimEnd().split("\n").slice(-6).join("\n") || "(no log yet)")))));
}

// Clock

let fired = null;

async function drawClock() {
  const {ping_sources} = await api("/clock");
  return h("section", {id: "clock"}, h("h2", {}, "Clock"),
    h("p", {class: "muted"}, "Fire a PingSource now instead of waiting for its schedule (same as `nextup ping NAME`)."),
    fired ? h("p", {class: "note", id: "fired"}, `${fired.name}: tick ${fired.id} → ${fired.status ?? fired.detail}`) : "",
    table(["PingSource", "schedule", "next tick", "data", ""], ping_sources.map((p) => h("tr", {},
      h("td", {class: "mono"}, p.name), h("td", {class: "mono"}, `${p.schedule} ${p.timezone}`),
      h("td", {}, new Date(p.next).toLocaleString()), h("td", {class: "mono"}, p.data),
      h("td", {}, h("button", {"data-fire": p.name, onclick: async () => {
        fired = await api("/ping/" + encodeURIComponent(p.name), {}); redraw(); }}, "Fire now"))))));
}

// Send

let chosen = "";
let sent = null;

async function drawSend() {
  const {types} = await api("/catalog");
  const type = types.find((t) => t.type === chosen) || types[0];
  chosen = type.type;
  const editor = h("textarea", {id: "send-data", name: "send-data",
    oninput: (e) => { drafts["send:" + chosen] = e.target.value; }},
    drafts["send:" + chosen] ?? JSON.stringify(type.example, null, 2));
  const id = h("input", {name: "id", placeholder: "a new UUID", size: 36});
  const send = async () => {
    sent = await api("/send", {type: chosen, data: JSON.parse(editor.value), id: id.value.trim() || null});
    redraw();
  };
  return h("section", {id: "send"}, h("h2", {}, "Send an event"),
    h("form", {class: "bar", onsubmit: (e) => e.preventDefault()},
      h("label", {}, "type", h("select", {name: "type", onchange: (e) => { chosen = e.target.value; sent = null; redraw(); }},
        types.map((t) => h("option", {value: t.type, selected: t.type === chosen}, t.type)))),
      h("label", {}, "id", id), h("button", {id: "send-button", onclick: send}, "Send")),
    h("p", {}, type.summary, h("span", {class: "muted"}, ` From ${type.producer} to ${type.consumers.join(", ") || "nobody"}.`)),
    sent ? h("p", {class: "note", id: "sent"}, `${sent.type} ${sent.id}: ${sent.status} `,
      h("a", {href: "#event/" + sent.ref}, "follow it")) : "",
    editor);
}

// Routing and the live stream

const views = {
  timeline: {live: true, draw: drawTimeline},
  event: {live: true, draw: () => drawEvent(view.arg)},
  deadletters: {live: true, draw: drawDeadLetters},
  state: {live: true, draw: drawState},
  functions: {live: true, draw: drawFunctions},
  clock: {live: false, draw: drawClock},
  send: {live: false, draw: drawSend},
};

let ticking = null;

function route() {
  const [name, ...rest] = (location.hash.slice(1) || "timeline").split("/");
  const arg = decodeURIComponent(rest.join("/"));
  const known = views[name] ? name : "timeline";
  if (known === "state") stateUser = arg;
  if (known === "deadletters" && arg) { inspected = null; planned = null; }
  view = {name: known, arg, ...views[known]};
  // Processes start and stop without an event to say so: the Functions view looks again
  // every two seconds while it is shown (and only then).
  clearInterval(ticking);
  ticking = known === "functions" ? setInterval(() => redraw(false), 2000) : null;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("on", a.dataset.view === (known === "event" ? "timeline" : known));
  }
  redraw();
}

function live() {
  const badgeEl = document.getElementById("live");
  const stream = new EventSource("/ui/api/stream");
  stream.addEventListener("open", () => { badgeEl.textContent = "live"; badgeEl.className = "on"; });
  stream.addEventListener("error", () => { badgeEl.textContent = "reconnecting"; badgeEl.className = ""; });
  stream.addEventListener("changed", liveRedraw);
}

window.addEventListener("hashchange", route);
route();
live();
