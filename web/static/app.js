// The page around the viewer: it chooses the file (or downloads a shared
// one), asks for a password or a sign-in when the report needs one, and
// shows what the worker opened. The report is read and opened only inside
// the worker, by the Rust code. Everything taken from a report is put on
// the page as text (textContent) or as a Blob URL, never as markup.
"use strict";

import { createConsole } from "./console.js";
import { createCapture } from "./capture.js";

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
let file = null;
let header = null;
// The session itself is an HttpOnly cookie no script can read; the page
// keeps only the CSRF token every request must echo, for this tab.
let session = null; // { csrf, device, email }
let dropId = null; // the share link this page was opened for

function deviceId() {
  let id = localStorage.getItem("medseal-device-id");
  if (!id || !/^web_[0-9a-f]{32}$/.test(id)) {
    const b = crypto.getRandomValues(new Uint8Array(16));
    id = "web_" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("medseal-device-id", id);
  }
  return id;
}

function problem(text) {
  $("error-summary-text").textContent = text;
  $("error-summary").hidden = false;
  $("error-summary").focus();
  $("progress").textContent = "";
}

function clearProblem() {
  $("error-summary").hidden = true;
}

function ask(message) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (e) => resolve(e.data);
    worker.postMessage(message, [channel.port2]);
  });
}

function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (session) {
    headers["X-CSRF-Token"] = session.csrf;
    headers["X-Device-Id"] = session.device;
  }
  return fetch(path, {
    ...options,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  }).catch(() => {
    throw new Error("The key server cannot be reached. Check the connection and try again.");
  });
}

// What a refusal of the key server means to the person in front of it.
function refusal(status, body) {
  if (status === 401) {
    forgetSession();
    return "Your session has ended. Sign in again.";
  }
  const message = (body && body.message) || "";
  if (status === 403) return "You are not a recipient of this report.";
  if (status === 410) {
    if (/expired/.test(message)) return `This report is no longer available: it has expired (${message}).`;
    return `This report is no longer available: it has been revoked (${message}).`;
  }
  if (status === 404) return "This report or link is not known here. It may have expired and been deleted.";
  if (status === 409) return "The key server refused: its records failed an integrity check. Tell your information governance lead.";
  if (status === 429) return "Too many attempts. Wait a while and try again.";
  return message || `The key server answered ${status}.`;
}

// ---- what is shown --------------------------------------------------------

let urls = []; // object URLs of what is shown, revoked when it goes

function clearShown() {
  for (const u of urls) URL.revokeObjectURL(u);
  urls = [];
  $("result").hidden = true;
  $("report").hidden = true;
  for (const id of ["report-facts", "report-consent", "photos", "recordings", "files"]) $(id).replaceChildren();
}

function blobUrl(blob) {
  const u = URL.createObjectURL(blob);
  urls.push(u);
  return u;
}

function fact(list, term, value) {
  if (value === undefined || value === null || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

const words = (s) => String(s).replace(/-/g, " ");
const baseName = (path) => path.slice(path.lastIndexOf("/") + 1);

function saveLink(name, blob, label) {
  const a = document.createElement("a");
  a.href = blobUrl(blob);
  a.download = name;
  a.textContent = label || `Save ${name}`;
  return a;
}

// Identifier systems people know by name; others are shown as written.
const SYSTEMS = {
  "https://fhir.nhs.uk/Id/nhs-number": "NHS number",
  "http://ns.electronichealth.net.au/id/hi/ihi/1.0": "IHI",
};

function showReport(answer) {
  const m = answer.report;
  const facts = $("report-facts");
  for (const id of m.patient.identifiers) fact(facts, `Patient identifier (${SYSTEMS[id.system] || id.system})`, id.value);
  if (m.patient.minimised) fact(facts, "Patient", "pseudonymous identifier only");
  fact(facts, "Captured by", m.capturer.email ? `${m.capturer.name} <${m.capturer.email}>` : m.capturer.name);
  fact(facts, "Organisation", m.organisation);
  fact(facts, "Created", m.created_at);
  fact(facts, "Body site", m.body_site);
  fact(facts, "Report id", m.report_id);
  const c = m.consent;
  const consent = $("report-consent");
  fact(consent, "How", words(c.method));
  fact(consent, "Given by", words(c.given_by));
  fact(consent, "For", c.scope.map(words).join(", "));
  fact(consent, "Recorded", c.recorded_at);
  fact(consent, "Witness", c.witness);
  fact(consent, "Evidence", c.evidence);
  fact(consent, "Why consent could not be given", c.unable_reason);
  $("report-notes").textContent = m.notes || "";
  $("report-notes-block").hidden = !m.notes;

  const byPath = new Map(answer.files.map((f) => [f.path, f.blob]));
  const photos = $("photos");
  const recordings = $("recordings");
  for (const entry of m.media) {
    const blob = byPath.get(entry.path);
    if (!blob) continue;
    const name = baseName(entry.path);
    const kind = blob.type.split("/")[0];
    if (kind === "image") {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = blobUrl(blob);
      img.alt = name;
      img.dataset.path = entry.path;
      const cap = document.createElement("figcaption");
      cap.textContent = entry.kind === "consent-evidence" ? `${name} (consent evidence)` : name;
      fig.append(img, cap);
      photos.append(fig);
    } else if (kind === "audio" || kind === "video") {
      const fig = document.createElement("figure");
      const player = document.createElement(kind);
      player.controls = true;
      player.preload = "metadata";
      player.src = blobUrl(blob);
      player.setAttribute("aria-label", name);
      const cap = document.createElement("figcaption");
      cap.textContent = name;
      fig.append(player, cap);
      recordings.append(fig);
    }
  }
  $("photos-block").hidden = !photos.children.length;
  $("recordings-block").hidden = !recordings.children.length;

  const pdf = byPath.get("report.pdf");
  $("pdf-link").href = pdf ? blobUrl(pdf) : "#";
  const list = $("files");
  for (const f of answer.files) {
    const li = document.createElement("li");
    li.append(saveLink(baseName(f.path), f.blob));
    list.append(li);
  }
  const manifest = new Blob([JSON.stringify(m, null, 2)], { type: "application/json" });
  const li = document.createElement("li");
  li.append(saveLink("manifest.json", manifest));
  list.append(li);
  $("report").hidden = false;
  $("report-title").focus();
}

function showPlain(answer) {
  const link = $("save-link");
  link.href = blobUrl(answer.plain);
  link.download = (file.name || "report").replace(/\.mseal$/, "") || "report";
  $("result-summary").textContent = `${answer.length} bytes, every chunk verified. This file is not a report: save it to open it with the right program.`;
  $("result").hidden = false;
  $("result-title").focus();
}

// ---- opening --------------------------------------------------------------

async function choose(f) {
  clearProblem();
  opening++; // whatever was being opened is no longer wanted
  // Nothing is opened until this file's own header is known.
  file = null;
  header = null;
  clearShown();
  const answer = await ask({ op: "describe", file: f });
  if (answer.error) {
    problem(answer.error.class === "format" ? "This is not a medseal report." : answer.error.message);
    return false;
  }
  file = f;
  header = answer.header;
  $("password-field").hidden = header.key_mode !== "password";
  return true;
}

let opening = 0; // answers to an earlier request are dropped

async function open(secret) {
  $("progress").textContent = "Checking and opening the report…";
  clearShown();
  const mine = ++opening;
  const answer = await ask({ op: "open", file, secret });
  if (mine !== opening) return;
  $("report-password").value = "";
  if (answer.error) {
    const said = {
      damaged: "This report is damaged or tampered. Nothing from it is shown. Ask the sender for a fresh copy.",
      key: header.key_mode === "password"
        ? "The password is not right for this report."
        : "This report is damaged or tampered: its key does not open it. Nothing from it is shown.",
    };
    return problem(said[answer.error.class] || answer.error.message);
  }
  $("progress").textContent = "";
  if (answer.report) showReport(answer);
  else showPlain(answer);
}

async function fetchKey() {
  const r = await api(`/v1/keys/${encodeURIComponent(header.key_id)}`);
  const body = await r.json().catch(() => ({}));
  if (r.ok && typeof body.key === "string") return body.key;
  throw new Error(refusal(r.status, body));
}

async function fetchDrop() {
  $("progress").textContent = "Downloading the sealed report…";
  const r = await api(`/v1/drops/${encodeURIComponent(dropId)}`);
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(refusal(r.status, body));
  }
  // Kept by the browser as a Blob (outside the page's heap), then opened
  // like a chosen file.
  const blob = await r.blob();
  return new File([blob], `shared-${dropId}.mseal`, { type: "application/octet-stream" });
}

// One action at a time: while the sign-in asks, "Open" waits.
function askSignIn(where) {
  $("signin-server").textContent = where;
  $("signin").hidden = false;
  $("open-button").hidden = true;
  $("signin-email").focus();
}

function signInDone() {
  $("signin").hidden = true;
  $("open-button").hidden = false;
}

async function openChosen() {
  if (dropId && !file) {
    if (!session) return askSignIn("Sign in to open the report shared with you.");
    try {
      if (!(await choose(await fetchDrop()))) return;
    } catch (err) {
      return problem(err.message);
    }
  }
  if (!file || !header) return problem("Choose a sealed report to open.");
  if (header.key_mode === "password") {
    const pw = $("report-password").value;
    if (!pw) return problem("Enter the report's password.");
    return open({ password: pw });
  }
  if (header.key_mode === "keyserver") {
    if (header.keyserver !== location.origin) {
      return problem(`This report's key is held by ${header.keyserver}. Open it in that organisation's medseal.`);
    }
    if (!session) return askSignIn(`The key is held by ${header.keyserver}.`);
    try {
      return await open({ key: await fetchKey() });
    } catch (err) {
      if (dropId) file = null; // downloaded again after a fresh sign-in
      return problem(err.message);
    }
  }
  problem("This report is sealed with an organisation key, which is not kept in the browser. Open it with the medseal command line.");
}

// ---- sessions -------------------------------------------------------------

function showSession() {
  $("who").hidden = !session;
  $("signout").hidden = !session;
  $("who").textContent = session ? session.email : "";
}

function keepSession(s) {
  session = s;
  sessionStorage.setItem("medseal-session", JSON.stringify(s));
  showSession();
}

function forgetSession() {
  session = null;
  sessionStorage.removeItem("medseal-session");
  showSession();
  orgConsole.forget();
}

const orgConsole = createConsole({
  api,
  problem,
  clearProblem,
  say: (text) => { $("progress").textContent = text; },
  sessionEnded: () => {
    forgetSession();
    askSignIn("Your session has ended. Sign in again to use the console.");
  },
});

const capture = createCapture({
  api,
  problem,
  clearProblem,
  say: (text) => { $("progress").textContent = text; },
  session: () => session,
  sessionEnded: () => {
    // As at a sign-out: the keys kept on the phone and the form (another
    // clinician may be next) go; sealed reports waiting here stay.
    capture.forget().catch(() => {});
    forgetSession();
    askSignIn("Your session has ended. Sign in again; the reports waiting on this phone are kept.");
    $("signin-title").textContent = "Sign in";
  },
});

const inCapture = () => location.hash === "#/capture" || location.hash.startsWith("#/capture?");

// Capture needs a session (for the key and for sending); without one it
// asks for a sign-in first.
async function showCapture() {
  $("page-title").textContent = "Capture a report";
  document.title = "Capture a report – medseal";
  $("intro").hidden = true;
  $("drop-intro").hidden = true;
  $("open-form").hidden = true;
  if (!session) {
    capture.hide();
    askSignIn("Sign in to capture a report.");
    $("signin-title").textContent = "Sign in";
    return;
  }
  await capture.show();
}

const inConsole = () => location.hash === "#/console" || location.hash.startsWith("#/console/") || location.hash.startsWith("#/console?");

// The console needs a session; without one it asks for a sign-in first.
async function showConsole() {
  $("main").classList.add("wide");
  $("page-title").textContent = "Organisation console";
  document.title = "Organisation console – medseal";
  $("intro").hidden = true;
  $("drop-intro").hidden = true;
  $("open-form").hidden = true;
  if (!session) {
    orgConsole.hide();
    askSignIn("Sign in with your organisation account to use the console.");
    $("signin-title").textContent = "Sign in";
    return;
  }
  await orgConsole.show(location.hash);
}

async function resumeSession() {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem("medseal-session") || "null");
  } catch {
    saved = null;
  }
  if (!saved || saved.device !== deviceId()) return;
  session = saved;
  const r = await api("/v1/sessions/current").catch(() => null);
  // No answer at all: no connection. The session is kept, so that a
  // clinician can go on capturing; the key server decides when it is back.
  if (!r || r.ok) showSession();
  else forgetSession();
}

// One way to sign in shows at a time: a password, or an e-mailed code.
function useCode(on) {
  $("password-row").hidden = on;
  $("code-row").hidden = !on;
  $("other-ways").hidden = on;
  $("sso-form").hidden = true;
}

async function postSession(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, cookie: true }),
    credentials: "same-origin",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  }).catch(() => null);
  if (!r) return { error: "The key server cannot be reached. Check the connection and try again." };
  const answer = await r.json().catch(() => ({}));
  if (r.status === 429) return { error: "Too many attempts. Wait a while and try again." };
  if (!r.ok) return { status: r.status, error: answer.message || `The key server answered ${r.status}.` };
  return { csrf: answer.csrf_token };
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  clearProblem();
  const device = deviceId();
  const email = $("signin-email").value.trim();
  if (!email) return problem("Enter your email address.");
  const withCode = !$("code-row").hidden;
  let result;
  if (withCode) {
    const code = $("signin-code").value.replace(/[\s-]/g, "");
    if (!/^[0-9]{8}$/.test(code)) return problem("Enter the 8-digit code from the e-mail.");
    result = await postSession("/v1/sessions", { email, code, device_id: device });
    $("signin-code").value = "";
    if (result.error && result.status === 401) result.error = "The code is not right, or it has expired or been used. Ask for a new one.";
  } else {
    if (!$("signin-password").value) return problem("Enter your password.");
    result = await postSession("/v1/sessions", { email, password: $("signin-password").value, device_id: device });
    $("signin-password").value = "";
    if (result.error && result.status === 401) result.error = "The email address or password is not right.";
  }
  if (result.error) return problem(result.error);
  keepSession({ csrf: result.csrf, device, email });
  signedIn();
});

function signedIn() {
  useCode(false);
  signInDone();
  if (inConsole()) {
    showConsole();
    return;
  }
  if (inCapture()) {
    showCapture();
    return;
  }
  if (location.hash.startsWith("#/code")) {
    history.replaceState(null, "", "#/open");
    route();
    $("progress").textContent = `Signed in as ${session.email}. Choose the report to open.`;
    return;
  }
  if (file || dropId) openChosen();
}

$("code-button").addEventListener("click", async () => {
  clearProblem();
  const email = $("signin-email").value.trim();
  if (!email) {
    $("signin-email").focus();
    return problem("Enter your email address, then choose \"Email me a code\".");
  }
  const r = await fetch("/v1/sessions/code", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, device_id: deviceId() }),
    credentials: "same-origin",
    cache: "no-store",
  }).catch(() => null);
  if (!r) return problem("The key server cannot be reached. Check the connection and try again.");
  if (r.status === 429) return problem("Too many codes asked for. Wait a while and try again.");
  if (r.status !== 202) {
    const body = await r.json().catch(() => ({}));
    return problem(body.message || `The key server answered ${r.status}.`);
  }
  useCode(true);
  $("progress").textContent = `If ${email} may sign in here, a code is on its way to it.`;
  $("signin-code").focus();
});

// ---- single sign-on -------------------------------------------------------
// The key server sends the browser to the organisation's provider and back
// to #/sso with a one-minute grant, which only this tab can exchange: it
// keeps the verifier whose SHA-256 it sent at the start.

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

$("sso-button").addEventListener("click", () => {
  clearProblem();
  $("sso-form").hidden = false;
  const email = $("signin-email").value.trim();
  if (!$("sso-org").value && email.includes("@")) $("sso-org").value = email.slice(email.lastIndexOf("@") + 1);
  $("sso-org").focus();
});

$("sso-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  clearProblem();
  const org = $("sso-org").value.trim();
  if (!org) return problem("Enter your organisation's name or your email domain.");
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const device = deviceId();
  const back = location.hash && !location.hash.startsWith("#/sso") && !location.hash.startsWith("#/code") ? location.hash : "#/open";
  sessionStorage.setItem("medseal-sso", JSON.stringify({ verifier, device }));
  const q = new URLSearchParams({ device_id: device, return_to: `/app/${back}`, challenge: b64url(digest) });
  location.assign(`/v1/sso/${encodeURIComponent(org)}/start?${q}`);
});

async function finishSso(params) {
  const next = params.get("next") || "/open";
  let pending = null;
  try {
    pending = JSON.parse(sessionStorage.getItem("medseal-sso") || "null");
  } catch {
    pending = null;
  }
  sessionStorage.removeItem("medseal-sso");
  // The grant leaves the address bar (and the history) at once.
  history.replaceState(null, "", `#${next}`);
  route();
  if (params.get("error")) return problem(`Single sign-on did not complete: ${params.get("error")}`);
  if (!pending || pending.device !== deviceId()) return problem("Single sign-on did not complete in this tab. Start again.");
  const result = await postSession("/v1/sso/session", { grant: params.get("grant") || "", verifier: pending.verifier, device_id: pending.device });
  if (result.error) return problem(result.status === 401 ? "Single sign-on did not complete. Start again." : result.error);
  session = { csrf: result.csrf, device: pending.device, email: "" };
  const me = await api("/v1/sessions/current").catch(() => null);
  const who = me && me.ok ? await me.json().catch(() => ({})) : {};
  keepSession({ ...session, email: who.email || "" });
  $("progress").textContent = `Signed in as ${session.email}.`;
  if (inConsole()) showConsole();
  else if (inCapture()) showCapture();
  else if (dropId) openChosen();
}

$("signout").addEventListener("click", async () => {
  // The keys kept for sealing with no connection go first, while the
  // session can still revoke them.
  await capture.forget().catch(() => {});
  await api("/v1/sessions/current", { method: "DELETE" }).catch(() => null);
  forgetSession();
  clearShown();
  if (inConsole() || inCapture()) route();
});

// ---- saving ---------------------------------------------------------------

$("save-all").addEventListener("click", () => {
  // One download per file; the browser may ask once to allow several.
  for (const a of $("files").querySelectorAll("a[download]")) a.click();
});

// ---- routes and events ----------------------------------------------------

function route() {
  if (location.hash.startsWith("#/sso?")) {
    finishSso(new URLSearchParams(location.hash.slice("#/sso?".length)));
    return;
  }
  signInDone();
  useCode(false);
  $("main").classList.remove("wide");
  document.title = "Open a sealed report – medseal";
  if (inConsole()) {
    capture.hide();
    clearShown();
    clearProblem();
    $("progress").textContent = "";
    showConsole();
    return;
  }
  orgConsole.hide();
  if (inCapture()) {
    clearShown();
    clearProblem();
    $("progress").textContent = "";
    showCapture();
    return;
  }
  capture.hide();
  const m = /^#\/drop\/(d_[0-9a-f]{32})$/.exec(location.hash);
  dropId = m ? m[1] : null;
  file = null;
  header = null;
  clearShown();
  clearProblem();
  $("file-field").hidden = !!dropId;
  $("intro").hidden = !!dropId;
  $("drop-intro").hidden = !dropId;
  $("page-title").textContent = dropId ? "Open a shared report" : "Open a sealed report";
  if (location.hash.startsWith("#/drop/") && !dropId) problem("This link is not complete. Copy the whole link from the message you were sent.");
  if (location.hash.startsWith("#/code")) {
    // From the e-mail: the address and code are filled in, and nothing is
    // used until "Sign in" is chosen (mail scanners open links too).
    const q = new URLSearchParams(location.hash.slice(location.hash.indexOf("?") + 1));
    history.replaceState(null, "", "#/code");
    $("page-title").textContent = "Sign in with your code";
    $("intro").hidden = true;
    $("open-form").hidden = true;
    askSignIn("Choose \"Sign in\" to use the code we e-mailed you.");
    $("signin-title").textContent = "Sign in";
    useCode(true);
    if (q.get("email")) $("signin-email").value = q.get("email");
    if (q.get("code")) $("signin-code").value = q.get("code");
    return;
  }
  $("open-form").hidden = false;
  $("signin-title").textContent = "Sign in to fetch the key";
}

$("report-file").addEventListener("change", (e) => e.target.files[0] && choose(e.target.files[0]));
document.addEventListener("dragover", (e) => { e.preventDefault(); $("main").classList.add("dropping"); });
document.addEventListener("dragleave", () => $("main").classList.remove("dropping"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  $("main").classList.remove("dropping");
  if (e.dataTransfer.files[0] && !dropId) choose(e.dataTransfer.files[0]);
});
$("open-form").addEventListener("submit", (e) => {
  e.preventDefault();
  clearProblem();
  openChosen();
});
window.addEventListener("hashchange", route);
// The session is known before the first screen, so that the console does
// not ask for a sign-in the tab already has.
resumeSession().finally(route);
// Installed, the app starts and captures with no connection: its own files
// are kept by the service worker (never a report or an API answer).
if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(() => {});
