// Photocraft's web page: submits photos to the gateway (/v1/jobs, /v1/batches), follows each job
// over its WebSocket on the notifier, and shows the API key's usage this month (/v1/usage). API: docs/api.md.
"use strict";

const MAX_PHOTOS = 50;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const FINAL_CLOSE = new Set([1000, 4401, 4403, 4404]); // any other close: reconnect with after=
const KEY = "photocraft.apiKey", DEVICE = "photocraft.deviceToken";

const $ = (selector, root = document) => root.querySelector(selector);
const form = $("#submit-form");
const fields = form.elements;
let photos = [];

// Each operation's friendly controls, as the operation's params (docs/api.md).
const PARAMS = {
  "remove-background": () => ({
    subject: fields.subject.value, refine: fields.refine.checked,
    background: {
      transparent: { type: "transparent" },
      color: { type: "color", color: fields.color.value },
      blur: { type: "blur", radius: Number(fields.radius.value) },
    }[fields.background.value],
  }),
  enhance: () => ({ scale: Number(fields.scale.value), upscaler: fields.upscaler.value,
                    denoise: Number(fields.denoise.value) }),
  retouch: () => ({ skin: Number(fields.skin.value), teeth: Number(fields.teeth.value),
                    eyes: Number(fields.eyes.value) }),
  restore: () => ({ upscale: Number(fields.upscale.value), faces: fields.faces.checked,
                    colorize: fields.colorize.checked, toning: fields.toning.value }),
  colorize: () => ({}),
  "text-to-image": () => ({ prompt: fields.prompt.value, steps: Number(fields.steps.value),
                            width: Number(fields.width.value), height: Number(fields.height.value) }),
};

/** Deep-merge plain objects: `extra` wins. */
function merge(base, extra) {
  const out = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const both = [out[k], v].every((x) => x && typeof x === "object" && !Array.isArray(x));
    out[k] = both ? merge(out[k], v) : v;
  }
  return out;
}

function params() {
  const op = fields.operation.value;
  let extra = {};
  if (fields.advanced.value.trim()) {
    extra = JSON.parse(fields.advanced.value); // a SyntaxError is shown to the user
    if (!extra || typeof extra !== "object" || Array.isArray(extra)) throw new Error("advanced parameters must be a JSON object");
  }
  return merge({ ...PARAMS[op](), output: { format: fields.format.value } }, extra);
}

/** Credentials: the API key if there is one (kept for the next visit), else this browser's device token. */
function credentials() {
  const key = fields["api-key"].value.trim(), device = localStorage.getItem(DEVICE);
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : device ? { "X-Device-Token": device } : {};
}

/** POST a form to the gateway; resolves to the JSON body, or throws the problem as an Error. */
async function post(path, body) {
  const response = await fetch(path, { method: "POST", body, headers: credentials() });
  const issued = response.headers.get("X-Device-Token");
  if (issued) localStorage.setItem(DEVICE, issued);
  const data = await response.json().catch(() => ({}));
  if (response.ok) return data;
  const retry = response.headers.get("Retry-After");
  throw new Error(`${response.status} ${data.title || response.statusText}: ${data.detail || "no detail"}`
                  + (retry ? ` (retry in ${retry} s)` : ""));
}

// ---- the form ----------------------------------------------------------------------------

function showOperation() {
  const op = fields.operation.value;
  for (const el of form.querySelectorAll("[data-op]")) el.hidden = el.dataset.op !== op;
  $("[data-needs-photo]").hidden = op === "text-to-image";
  for (const el of form.querySelectorAll("[data-background]")) el.hidden = el.dataset.background !== fields.background.value;
}

function choose(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || !f.type);
  photos = images.slice(0, MAX_PHOTOS);
  $("#file-count").textContent = photos.length
    ? `${photos.length} photo${photos.length > 1 ? "s" : ""} chosen` + (images.length > MAX_PHOTOS ? ` (the first ${MAX_PHOTOS})` : "")
    : "";
}

function formError(message) {
  const el = $("#form-error");
  el.textContent = message;
  el.hidden = !message;
}

async function submit(event) {
  event.preventDefault();
  formError("");
  const op = fields.operation.value;
  let body;
  try {
    body = new FormData();
    body.append("operation", op);
    body.append("params", JSON.stringify(params()));
  } catch (err) {
    return formError(`Parameters: ${err.message}`);
  }
  if (op === "text-to-image") {
    if (!fields.prompt.value.trim()) return formError("Type a prompt first.");
    return start([card(fields.prompt.value, null)], "/v1/jobs", body);
  }
  if (!photos.length) return formError("Choose a photo first.");
  const cards = photos.map((file) => card(file.name, file));
  if (photos.length === 1) {
    body.append("file", photos[0]);
    return start(cards, "/v1/jobs", body);
  }
  for (const file of photos) body.append("files", file);
  return start(cards, "/v1/batches", body);
}

async function start(cards, path, body) {
  $("#submit").disabled = true;
  try {
    const accepted = await post(path, body);
    const jobs = accepted.jobs || [accepted]; // a batch lists its jobs in the order of its photos
    jobs.forEach((job, i) => follow(cards[i], job));
  } catch (err) {
    for (const c of cards) finish(c, "failed", err.message);
  } finally {
    $("#submit").disabled = false;
  }
}

// ---- one job -----------------------------------------------------------------------------

/** A new job card; `file` is the original photo (null for text-to-image). */
function card(name, file) {
  const el = $("#job-template").content.firstElementChild.cloneNode(true);
  $(".job-name", el).textContent = name;
  if (file) $(".original", el).src = URL.createObjectURL(file);
  else el.classList.add("no-original");
  const slider = $(".compare input", el);
  slider.addEventListener("input", () => $(".compare", el).style.setProperty("--split", `${slider.value}%`));
  $("#jobs").prepend(el);
  return el;
}

function status(el, text) {
  $(".job-status", el).textContent = text;
}

function finish(el, state, error) {
  el.dataset.status = state;
  $(".cancel", el).hidden = true;
  status(el, state);
  if (error) Object.assign($(".error", el), { textContent: error, hidden: false });
}

function completed(el, result_url, results, warnings) {
  if (!results.length) results = [{ url: result_url, role: "image", content_type: "image/png" }];
  $(".result", el).src = results.find((r) => r.role === "image").url;
  $(".compare", el).hidden = false;
  $("progress", el).value = 100;
  const name = $(".job-name", el).textContent.replace(/\.[^.]*$/, "") || "result";
  const links = $(".links", el);
  links.replaceChildren(...results.map((r) => Object.assign(document.createElement("a"), {
    href: r.url, target: "_blank", rel: "noopener", className: r.role === "image" ? "download" : "extra",
    download: `${name}-${r.role}.${r.content_type.split("/")[1]}`,
    textContent: `Download ${r.role}` + (r.width ? ` (${r.width}×${r.height}, ${Math.round(r.size_bytes / 1024)} KB)` : ""),
  })));
  if (warnings && warnings.length) links.append(` Warnings: ${warnings.join("; ")}`);
  links.hidden = false;
  finish(el, "completed");
  const report = results.find((r) => r.role === "report");
  if (report) showReport(el, report.url);
}

// ---- a job's report (restore: docs/api.md, "The report") -----------------------------------

/** A value of a stage's info, short: numbers to two decimals, lists and objects inline. */
function brief(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (Array.isArray(value)) return value.map(brief).join(", ");
  if (value && typeof value === "object") return Object.entries(value).map(([k, v]) => `${k} ${brief(v)}`).join(", ");
  return String(value);
}

function item(tag, text, className = "") {
  return Object.assign(document.createElement(tag), { textContent: text, className });
}

/** One stage of the report as a list item: what it did (on which model) and why, with its info. */
function stageItem(s) {
  const what = { ran: `ran on ${s.model}`, reused: `reused (${s.model || "earlier result"})`,
                 skipped: "skipped", "not-run": "not run" }[s.status] || s.status;
  const info = Object.entries(s.info || {}).filter(([k]) => k !== "stages").map(([k, v]) => `${k}: ${brief(v)}`);
  const li = item("li", "", `stage-${s.status}`);
  li.append(item("strong", s.stage), ` ${what}: ${s.reason}`);
  if (info.length) li.append(item("small", ` (${info.join("; ")})`));
  return li;
}

/** Fetch the report (a presigned S3 URL) and show it beside the before/after view. */
async function showReport(el, url) {
  const box = $(".report", el);
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const report = await response.json();
    $(".findings", box).replaceChildren(...report.findings.map((f) => item("li", f)));
    $(".stages", box).replaceChildren(...report.stages.map(stageItem));
    $(".missing ul", box).replaceChildren(...report.not_installed.map((m) => item("li", `${m.stage}: ${m.effect}`)));
    $(".missing", box).hidden = !report.not_installed.length;
    $(".analysis", box).textContent = JSON.stringify(report.analysis, null, 2);
  } catch (err) {
    box.replaceChildren(item("p", `Report unavailable: ${err.message}`, "error"));
  }
  box.hidden = false;
  el.classList.add("with-report");
}

/** Show one event of the job (docs/events.md). */
function show(el, m) {
  const progress = $("progress", el);
  switch (m.type) {
    case "received": return status(el, "received");
    case "queued": return status(el, `queued (${m.position} ahead)`);
    case "started": el.dataset.status = "running"; return status(el, `running: ${m.stage}`);
    case "progress":
      progress.value = m.percent;
      return status(el, `${m.stage}: ${m.message || ""} ${Math.round(m.percent)}%`);
    case "stage_completed": return status(el, `${m.stage} done`);
    case "retrying": return status(el, `retrying ${m.stage} in ${m.delay_s} s (attempt ${m.attempt} of ${m.max_attempts})`);
    case "completed": return completed(el, m.result_url, m.results || [], m.warnings);
    case "failed": return finish(el, "failed", `${m.code}: ${m.message}`);
    case "cancelled": return finish(el, "cancelled", m.reason);
  }
}

/** Follow a job's events; reconnects after a drop or a resync, from the last event seen. */
function follow(el, job) {
  el.dataset.jobId = job.job_id;
  el.dataset.status = job.status;
  status(el, job.status);
  const cancel = $(".cancel", el);
  cancel.hidden = false;
  cancel.onclick = () => fetch(job.status_url, { method: "DELETE", headers: { Authorization: `Bearer ${job.token}` } });
  let last = 0, drops = 0;
  const open = () => {
    const url = new URL(job.events_url);
    url.searchParams.set("token", job.token);
    if (last) url.searchParams.set("after", last);
    const socket = new WebSocket(url);
    socket.onmessage = ({ data }) => {
      const m = JSON.parse(data);
      if (m.type === "resync") return socket.close(4000, "resync");
      if (m.seq) {
        if (m.seq <= last) return;
        last = m.seq;
      }
      drops = 0;
      show(el, m);
    };
    socket.onclose = ({ code, reason }) => {
      if (TERMINAL.has(el.dataset.status)) return;
      if (!FINAL_CLOSE.has(code) && drops < 10) return setTimeout(open, Math.min(30000, 500 * 2 ** drops++));
      if (![4401, 4403, 4404].includes(code)) { // no terminal event seen: ask the gateway
        return poll(el, job).catch((err) => finish(el, "failed", err.message));
      }
      finish(el, "failed", `events unavailable (${code} ${reason})`);
    };
  };
  open();
}

/** Read the job once from the gateway and show its final state. */
async function poll(el, job) {
  const response = await fetch(job.status_url, { headers: { Authorization: `Bearer ${job.token}` } });
  const view = await response.json().catch(() => ({}));
  if (view.status === "completed") completed(el, view.result_url, view.results, view.warnings);
  else if (view.status === "failed") finish(el, "failed", `${view.error.code}: ${view.error.message}`);
  else if (TERMINAL.has(view.status)) finish(el, view.status);
  else if (view.status) status(el, `${view.status}; live updates lost`);
  else finish(el, "failed", `${response.status} ${view.title}: ${view.detail}`);
}

// ---- usage this month (GET /v1/usage, per operation) -----------------------------------------

/** One table row: a name, then jobs, charged jobs, units, megapixels in and out. */
function usageRow(name, u) {
  const tr = document.createElement("tr");
  const cells = [name, u.jobs, u.charged_jobs, u.units, u.megapixels_in.toFixed(2), u.megapixels_out.toFixed(2)];
  tr.replaceChildren(...cells.map((text, i) => Object.assign(document.createElement(i ? "td" : "th"), { textContent: text })));
  return tr;
}

/** Show the current month's usage of the API key in the form (none without a key). */
async function showUsage() {
  const key = fields["api-key"].value.trim(), note = $("#usage-note"), table = $("#usage-table");
  table.hidden = true;
  if (!key) return void (note.textContent = "Enter an API key to see this month's usage.");
  note.textContent = "loading…";
  try {
    const response = await fetch("/v1/usage?group_by=operation", { headers: { Authorization: `Bearer ${key}` } });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status} ${data.title || response.statusText}: ${data.detail || "no detail"}`);
    $("tbody", table).replaceChildren(...data.rows.map((r) => usageRow(r.key, r)));
    $("tfoot", table).replaceChildren(usageRow("Total", data.totals));
    note.textContent = `${data.tenant}, ${data.from} to ${data.to} (UTC days).`;
    table.hidden = false;
  } catch (err) {
    note.textContent = `Usage unavailable: ${err.message}`;
  }
}

// ---- wiring ------------------------------------------------------------------------------

fields["api-key"].value = localStorage.getItem(KEY) || "";
fields.operation.addEventListener("change", showOperation);
fields.background.addEventListener("change", showOperation);
fields.files.addEventListener("change", () => choose(fields.files.files));
const zone = $("#drop-zone");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("over");
  choose(e.dataTransfer.files);
});
form.addEventListener("submit", submit);
fields["api-key"].addEventListener("change", showUsage);
$("#usage-refresh").addEventListener("click", showUsage);
showOperation();
showUsage();
