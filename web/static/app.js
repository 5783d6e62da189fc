// The page around the viewer: it chooses the file, asks for a password or a
// sign-in when the report needs one, and shows what the worker opened.
// The report is read and opened only inside the worker, by the Rust code.
"use strict";

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
let file = null;
let header = null;
// The session itself is an HttpOnly cookie no script can read; the page
// keeps only the CSRF token every request must echo, in memory.
let session = null; // { csrf, device }

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

let shown = null; // the object URL of the last opened file

async function choose(f) {
  clearProblem();
  // Nothing is opened until this file's own header is known.
  file = null;
  header = null;
  $("result").hidden = true;
  if (shown) {
    URL.revokeObjectURL(shown);
    shown = null;
  }
  const answer = await ask({ op: "describe", file: f });
  if (answer.error) {
    return problem(answer.error.class === "format" ? "This is not a medseal report." : answer.error.message);
  }
  file = f;
  header = answer.header;
  $("password-field").hidden = header.key_mode !== "password";
}

async function open(secret) {
  $("progress").textContent = "Checking and opening the report…";
  const answer = await ask({ op: "open", file, secret });
  if (answer.error) {
    const words = {
      damaged: "This report is damaged or tampered. Nothing from it is shown. Ask the sender for a fresh copy.",
      key: "The password is not right for this report.",
    };
    return problem(words[answer.error.class] || answer.error.message);
  }
  $("progress").textContent = "";
  $("report-password").value = "";
  const url = URL.createObjectURL(answer.blob);
  shown = url;
  const link = $("save-link");
  link.href = url;
  link.download = file.name.replace(/\.mseal$/, "") || "report";
  $("result-summary").textContent = `${answer.length} bytes, every chunk verified.`;
  $("result").hidden = false;
  $("result-title").focus();
}

async function fetchKey() {
  const r = await fetch(`${header.keyserver}/v1/keys/${encodeURIComponent(header.key_id)}`, {
    headers: { "X-CSRF-Token": session.csrf, "X-Device-Id": session.device },
    credentials: "same-origin",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  }).catch(() => {
    throw new Error("The key server cannot be reached. Check the connection and try again.");
  });
  const body = await r.json().catch(() => ({}));
  if (r.ok) return body.key;
  const words = {
    403: "You are not a recipient of this report.",
    410: `This report's key is no longer available: ${body.message || "revoked or expired"}.`,
    409: "The key server refused to release this key: its records failed an integrity check.",
  };
  if (r.status === 401) session = null;
  throw new Error(words[r.status] || body.message || `The key server answered ${r.status}.`);
}

$("report-file").addEventListener("change", (e) => e.target.files[0] && choose(e.target.files[0]));
document.addEventListener("dragover", (e) => { e.preventDefault(); $("main").classList.add("dropping"); });
document.addEventListener("dragleave", () => $("main").classList.remove("dropping"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  $("main").classList.remove("dropping");
  if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0]);
});

$("open-form").addEventListener("submit", async (e) => {
  e.preventDefault();
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
    if (!session) {
      $("signin-server").textContent = `The key is held by ${header.keyserver}.`;
      $("signin").hidden = false;
      $("signin-email").focus();
      return;
    }
    try {
      return open({ key: await fetchKey() });
    } catch (err) {
      return problem(err.message);
    }
  }
  problem("This report is sealed with an organisation key, which is not kept in the browser. Open it with the medseal command line.");
});

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  clearProblem();
  const device = deviceId();
  const r = await fetch("/v1/sessions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: $("signin-email").value, password: $("signin-password").value, device_id: device, cookie: true }),
    credentials: "same-origin",
    cache: "no-store",
  }).catch(() => null);
  if (!r) return problem("The key server cannot be reached. Check the connection and try again.");
  const body = await r.json().catch(() => ({}));
  $("signin-password").value = "";
  if (!r.ok) return problem(r.status === 429 ? "Too many attempts. Wait a while and try again." : "The email address or password is not right.");
  session = { csrf: body.csrf_token, device };
  $("signin").hidden = true;
  $("open-form").requestSubmit();
});
