// Capture (#/capture): a clinician fills in the form, takes photos and a
// voice note, and the report is built and sealed on this device by the
// Rust code of `medseal capture` (medseal-web, in its own worker that is
// ended after each report, so its memory goes with it).
//
// What is kept, and where:
// - photos and recordings: in this page's memory (Blobs) until the report
//   is sealed or the form is cleared; never in storage;
// - sealed reports not sent yet: IndexedDB ("queue"), sent when the
//   connection returns and then deleted;
// - a few report keys taken in advance, so that a report can be sealed
//   with no connection: IndexedDB ("keys"), each used once and deleted
//   when used, all deleted (and revoked at the key server when it can be
//   reached) when the clinician signs out.
//
// Everything from a server is put on the page as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const DB = "medseal-capture";
const RESERVE = 2; // keys kept in advance per clinician
// Reports waiting are tried again after 20 s, then after twice as long
// each time the receiver still cannot take them, up to 10 minutes (a lost
// connection costs no attempt: it waits for the browser's "online").
const RETRY_MS = 20000;
const RETRY_MAX_MS = 10 * 60 * 1000;

// ---- IndexedDB ----------------------------------------------------------------

let dbPromise = null;

function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const open = indexedDB.open(DB, 1);
      open.onupgradeneeded = () => {
        open.result.createObjectStore("queue", { keyPath: "report_id" });
        open.result.createObjectStore("keys", { keyPath: "report_id" });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(new Error("This browser cannot keep reports waiting (IndexedDB is not available)."));
    });
  }
  return dbPromise;
}

// Runs `f(store)` in one transaction; answers what `f`'s last request gave.
async function inStore(name, mode, f) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(name, mode);
    let result;
    const req = f(t.objectStore(name));
    if (req) req.onsuccess = () => { result = req.result; };
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(t.error || new Error("IndexedDB failed"));
    t.onabort = () => reject(t.error || new Error("IndexedDB failed"));
  });
}

const all = (name) => inStore(name, "readonly", (s) => s.getAll());
const put = (name, value) => inStore(name, "readwrite", (s) => s.put(value));
const remove = (name, key) => inStore(name, "readwrite", (s) => s.delete(key));

// ---- small helpers ------------------------------------------------------------

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function hex(bytes) {
  return Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join("");
}

const newReportId = () => "r_" + hex(crypto.getRandomValues(new Uint8Array(16)));

// Now, to the second, as the command line records it.
function nowRfc3339() {
  return new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

function askWorker(w, message, transfer = []) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (e) => resolve(e.data);
    // A worker that cannot start (or dies) answers nothing: say so.
    w.onerror = () => resolve({ error: { class: "environment", message: "The report could not be built on this device: reload the page and try again." } });
    w.postMessage(message, [channel.port2, ...transfer]);
  });
}

function sizeText(n) {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

class Refused extends Error {}

// ---- the capture screen -------------------------------------------------------

export function createCapture({ api, problem, clearProblem, say, session, sessionEnded }) {
  let media = []; // { kind: "photo"|"audio", blob, name, url }
  let evidence = null; // { blob, name, url }
  let recorder = null; // { rec, chunks, stream, forConsent }
  let camera = null; // MediaStream
  let photoCount = 0;
  let audioCount = 0;
  let org = null; // { name, endpoint_url } from the key server, kept for offline use
  let flushing = false;
  let results = []; // what was sent or shared while this page was open
  let lastTry = ""; // why the queue is still waiting
  let retryIn = RETRY_MS; // the wait before the next try, while one fails
  let nextTry = null; // when the timer tries again (performance.now()), if something waits

  const me = () => session() && session().email;

  // -- the form's shape follows the consent method --
  function consentChanged() {
    const m = $("cap-consent").value;
    // Evidence belongs to the method it was taken for.
    if (evidence && !((m === "written" && evidence.kind === "photo") || (m === "verbal-recorded" && evidence.kind === "audio"))) setEvidence(null);
    $("cap-witness-field").hidden = m !== "verbal-witnessed";
    $("cap-form-field").hidden = m !== "written";
    $("cap-verbal-field").hidden = m !== "verbal-recorded";
    $("cap-reason-field").hidden = m !== "unable";
    $("cap-given-field").hidden = m === "unable";
    $("cap-scope-field").hidden = m === "unable";
  }
  $("cap-consent").addEventListener("change", consentChanged);
  $("cap-system").addEventListener("change", () => {
    $("cap-system-other-field").hidden = $("cap-system").value !== "other";
  });

  // -- media held in memory until sealed --
  function showMedia() {
    const items = media.map((m, i) => {
      const li = el("li");
      const n = media.slice(0, i + 1).filter((x) => x.kind === m.kind).length;
      const label = m.kind === "photo" ? `Photo ${n}` : `Voice note ${n}`;
      if (m.kind === "photo") li.append(el("img", null, { src: m.url, alt: label }));
      else {
        const a = el("audio", null, { controls: "", src: m.url, "aria-label": label });
        li.append(a);
      }
      li.append(el("span", `${label}, ${sizeText(m.blob.size)}`, { class: "hint" }));
      const b = el("button", `Remove ${label.toLowerCase()}`, { type: "button", class: "button secondary small" });
      b.addEventListener("click", () => {
        URL.revokeObjectURL(m.url);
        media.splice(i, 1);
        showMedia();
      });
      li.append(b);
      return li;
    });
    $("cap-media").replaceChildren(...items);
  }

  function addMedia(kind, blob, name) {
    media.push({ kind, blob, name, url: URL.createObjectURL(blob) });
    showMedia();
  }

  function setEvidence(blob, name, kind) {
    if (evidence) URL.revokeObjectURL(evidence.url);
    evidence = blob ? { blob, name, kind, url: URL.createObjectURL(blob) } : null;
    const box = $("cap-consent-recording");
    box.replaceChildren();
    if (evidence && $("cap-consent").value === "verbal-recorded") {
      box.append(el("audio", null, { controls: "", src: evidence.url, "aria-label": "Recorded consent" }));
    }
  }

  // Taken with the camera (the `capture` attribute) or chosen from the
  // phone: some phones offer only the camera to an input that asks for it.
  for (const id of ["cap-take", "cap-photos"]) {
    $(id).addEventListener("change", (e) => {
      for (const f of e.target.files) addMedia("photo", f, f.name || `photo-${++photoCount}.jpg`);
      e.target.value = "";
    });
  }
  $("cap-form-photo").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) setEvidence(f, f.name || "consent-form.jpg", "photo");
  });

  // -- the camera, in the page (getUserMedia) --
  $("cap-camera").addEventListener("click", async () => {
    clearProblem();
    try {
      camera = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment", width: { ideal: 4032 }, height: { ideal: 3024 } }, audio: false });
    } catch {
      return problem("The camera cannot be used: allow this page to use it, or use \"Take a photo\" or \"Add photos\".");
    }
    $("cap-video").srcObject = camera;
    $("cap-viewfinder").hidden = false;
    await $("cap-video").play().catch(() => {});
    $("cap-shoot").focus();
  });

  function closeCamera() {
    if (camera) for (const t of camera.getTracks()) t.stop();
    camera = null;
    $("cap-video").srcObject = null;
    $("cap-viewfinder").hidden = true;
  }
  $("cap-camera-close").addEventListener("click", closeCamera);

  $("cap-shoot").addEventListener("click", async () => {
    const v = $("cap-video");
    if (!v.videoWidth) return problem("The camera has not started yet. Try again.");
    const c = document.createElement("canvas");
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    c.getContext("2d").drawImage(v, 0, 0);
    const blob = await new Promise((r) => c.toBlob(r, "image/jpeg", 0.92));
    c.width = c.height = 0;
    if (!blob) return problem("The photo could not be taken. Try again.");
    addMedia("photo", blob, `camera-${++photoCount}.jpg`);
    say(`Photo taken. ${media.filter((m) => m.kind === "photo").length} in this report.`);
  });

  // -- recordings (MediaRecorder) --
  let starting = false;
  async function startRecording(forConsent) {
    if (starting || recorder) return;
    starting = true;
    try {
      await beginRecording(forConsent);
    } finally {
      starting = false;
    }
  }

  async function beginRecording(forConsent) {
    clearProblem();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch {
      return problem("The microphone cannot be used: allow this page to use it.");
    }
    const type = ["audio/webm;codecs=opus", "audio/mp4", "audio/ogg;codecs=opus"].find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t));
    let rec;
    try {
      rec = new MediaRecorder(stream, type ? { mimeType: type } : {});
    } catch {
      for (const t of stream.getTracks()) t.stop();
      return problem("This browser cannot record audio.");
    }
    const chunks = [];
    rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    rec.start();
    recorder = { rec, chunks, stream, forConsent };
    const button = forConsent ? $("cap-record-consent") : $("cap-record");
    button.textContent = "Stop recording";
    say("Recording…");
  }

  function stopRecording() {
    const r = recorder;
    recorder = null;
    return new Promise((resolve) => {
      r.rec.onstop = () => {
        for (const t of r.stream.getTracks()) t.stop();
        const type = (r.rec.mimeType || "audio/webm").split(";")[0];
        const ext = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
        const blob = new Blob(r.chunks, { type });
        if (r.forConsent) {
          setEvidence(blob, `consent.${ext}`, "audio");
          $("cap-record-consent").textContent = "Record consent again";
          say("Consent recorded.");
        } else {
          addMedia("audio", blob, `voice-note-${++audioCount}.${ext}`);
          $("cap-record").textContent = "Record a voice note";
          say("Voice note recorded.");
        }
        resolve();
      };
      r.rec.stop();
    });
  }

  $("cap-record").addEventListener("click", () => (recorder ? stopRecording() : startRecording(false)));
  $("cap-record-consent").addEventListener("click", () => (recorder ? stopRecording() : startRecording(true)));

  // -- what the form says --
  // Only what the chosen consent method shows is sent: a reason typed
  // under "cannot consent" does not travel with witnessed consent.
  function form() {
    const method = $("cap-consent").value;
    const system = $("cap-system").value === "other" ? $("cap-system-other").value.trim() : $("cap-system").value;
    if ($("cap-system").value === "other" && !system) throw new Refused("Enter the identifier system, or choose another identifier type.");
    const scope = Array.from(document.querySelectorAll("#cap-scope-field input:checked"), (i) => i.value);
    const s = session();
    return {
      patient_id: $("cap-patient").value,
      patient_id_system: system,
      consent: $("cap-consent").value || null,
      consent_by: $("cap-given").value,
      consent_scope: scope,
      witness: method === "verbal-witnessed" ? $("cap-witness").value : "",
      no_consent_reason: method === "unable" ? $("cap-reason").value : "",
      body_site: $("cap-site").value,
      note: $("cap-notes").value,
      capturer: s.email,
      capturer_email: s.email,
      organisation: (org && org.org) || "",
    };
  }

  function recipients() {
    const list = $("cap-recipients").value.split(/[\s,;]+/).map((r) => r.trim()).filter(Boolean);
    const bad = list.find((r) => !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(r));
    if (bad) throw new Refused(`"${bad}" is not an e-mail address. Enter one address per line.`);
    return list;
  }

  // -- keys taken in advance, for sealing with no connection --
  async function reserve() {
    const email = me();
    if (!email || !navigator.onLine) return;
    const held = (await all("keys")).filter((k) => k.user === email);
    for (let i = held.length; i < RESERVE; i++) {
      const key = await createKey(newReportId(), [email]).catch(() => null);
      if (!key) return;
      await put("keys", key);
    }
  }

  async function createKey(reportId, to) {
    const r = await api("/v1/keys", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ report_id: reportId, recipients: to }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) {
      sessionEnded();
      throw new Refused("Your session has ended. Sign in again.");
    }
    if (!r.ok) throw new Refused(body.message || `The key server answered ${r.status}.`);
    return { report_id: reportId, user: me(), origin: location.origin, key_id: body.key_id, key: body.key, made: Date.now() };
  }

  async function learnOrg() {
    try {
      const r = await api("/v1/org");
      if (r.ok) {
        const o = await r.json();
        const who = await api("/v1/sessions/current");
        const w = who.ok ? await who.json() : {};
        org = { org: w.org || o.name, endpoint_url: o.endpoint_url || null };
        localStorage.setItem("medseal-org", JSON.stringify({ ...org, user: me() }));
      }
    } catch {
      // Offline: what was learnt last time.
    }
    if (!org) {
      try {
        const kept = JSON.parse(localStorage.getItem("medseal-org") || "null");
        if (kept && kept.user === me()) org = kept;
      } catch {
        org = null;
      }
    }
    $("cap-send-label").textContent = org && org.endpoint_url
      ? `Send it to ${org.endpoint_url}`
      : "Send it to the organisation's receiving endpoint";
  }

  // -- sealing --
  let busy = false;
  $("capture-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy) return;
    busy = true;
    clearProblem();
    $("cap-seal").disabled = true;
    try {
      if (recorder) await stopRecording();
      await seal();
    } catch (err) {
      problem(err.message);
    } finally {
      busy = false;
      $("cap-seal").disabled = false;
    }
  });

  async function seal() {
    const then = document.querySelector("input[name=then]:checked").value;
    const to = recipients();
    const email = me();
    const held = (await all("keys").catch(() => [])).filter((k) => k.user === email && k.origin === location.origin);
    let key = held[0] || null;
    const reportId = key ? key.report_id : newReportId();
    const answers = form();
    const files = media.map((m) => ({ kind: m.kind, name: m.name, blob: m.blob }));
    if (evidence) files.push({ kind: "consent-evidence", name: evidence.name, blob: evidence.blob });
    const t0 = performance.now();
    const worker = takeWorker();
    try {
      say("Building the report…");
      const built = await askWorker(worker, {
        op: "build",
        form: answers,
        reportId,
        createdAt: nowRfc3339(),
        offset: -new Date().getTimezoneOffset() * 60,
        files,
      });
      if (built.error) throw new Refused(built.error.message);
      if (!key) {
        if (!navigator.onLine) throw new Refused("This phone holds no key to seal with and has no connection. Connect, then choose \"Seal report\" again.");
        say("Asking the key server for the report's key…");
        key = await createKey(reportId, [email]);
      }
      // A key taken in advance seals one report: it leaves the store
      // before it is used, so that no second report can take it.
      if (held[0] === key) await remove("keys", key.report_id);
      say("Sealing…");
      const sealed = await askWorker(worker, { op: "seal", origin: key.origin, keyId: key.key_id, key: key.key });
      if (sealed.error) throw new Refused(sealed.error.message);
      // The worker's WebAssembly memory at its largest, for
      // bench/browser-capture.sh (the worker ends with this report).
      self.captureWasmPeak = Math.max(self.captureWasmPeak || 0, built.wasmBytes || 0, sealed.wasmBytes || 0);
      self.captureStages = { build: built.ms, intake: built.intakeMs, seal: sealed.ms, total: performance.now() - t0 };
      const manifest = JSON.parse(built.manifest);
      const item = {
        report_id: reportId,
        user: email,
        key_id: key.key_id,
        made: Date.now(),
        then,
        recipients: to,
        photos: manifest.media.filter((m) => m.kind === "photo").length,
        size: sealed.size,
        sealed: then === "save" ? null : sealed.blob,
      };
      // Kept before the form is cleared: if the phone cannot keep it, it
      // is offered as a file instead of being lost.
      if (then !== "save" || to.length) {
        try {
          await put("queue", item);
        } catch {
          clearForm();
          showDone({ ...item, then: "save" });
          saveFile(reportId, sealed.blob);
          throw new Refused(`This phone cannot keep report ${reportId} to send later (its storage is full or not allowed). It has been saved as a file instead.`);
        }
      }
      clearForm();
      if (then === "save") saveFile(reportId, sealed.blob);
      showDone(item);
      await flush();
      reserve().catch(() => {});
    } finally {
      worker.terminate();
      warmWorker();
    }
  }

  // The capture worker is started before it is needed, its WebAssembly
  // compiled and ready, so that "Seal report" does not wait for it. Each
  // report ends its worker (and the memory that held the photos); the
  // next one is started then.
  let spare = null;
  function startWorker() {
    const w = new Worker(new URL("capture-worker.js", import.meta.url), { type: "module" });
    w.onerror = () => {
      w.failed = true;
    };
    return w;
  }
  function warmWorker() {
    if (!spare && !$("capture").hidden) spare = startWorker();
  }
  function takeWorker() {
    let w = spare;
    spare = null;
    // One that could not start is tried afresh (askWorker then says why).
    if (!w || w.failed) {
      if (w) w.terminate();
      w = startWorker();
    }
    return w;
  }
  function dropWorker() {
    if (spare) spare.terminate();
    spare = null;
  }

  function saveFile(reportId, blob) {
    const a = el("a", `Save ${reportId}.mseal again`, { download: `${reportId}.mseal` });
    a.href = URL.createObjectURL(blob);
    $("cap-done-link").replaceChildren(a);
    a.click();
  }

  function clearForm() {
    closeCamera();
    for (const m of media) URL.revokeObjectURL(m.url);
    media = [];
    setEvidence(null);
    showMedia();
    $("capture-form").reset();
    $("cap-system-other-field").hidden = true;
    consentChanged();
  }

  function showDone(item) {
    $("capture-form").hidden = true;
    $("cap-done").hidden = false;
    if (item.then !== "save") $("cap-done-link").replaceChildren();
    $("cap-done-text").textContent = item.then === "save"
      ? `Report ${item.report_id} is sealed (${sizeText(item.size)}) and saved.`
      : `Report ${item.report_id} is sealed (${sizeText(item.size)}). Sending…`;
    $("cap-done-title").focus();
  }

  $("cap-again").addEventListener("click", () => {
    $("cap-done").hidden = true;
    $("capture-form").hidden = false;
    $("cap-done-link").replaceChildren();
    say("");
    $("cap-patient").focus();
  });

  // -- the queue: sealed reports waiting for a connection --
  async function showQueue() {
    const email = me();
    const items = (await all("queue").catch(() => [])).sort((a, b) => a.made - b.made);
    const mine = items.filter((i) => i.user === email);
    const rows = mine.map((i) => {
      const li = el("li", `Report ${i.report_id}: ${i.photos} photos, ${sizeText(i.size || 0)}, sealed ${new Date(i.made).toLocaleString()}, to ${i.then === "link" ? "share as a link" : i.then === "send" ? "send" : "add its recipients"}`);
      if (i.failed) {
        li.append(el("span", `Not sent: ${i.failed}`, { class: "hint" }));
        if (i.sealed) {
          const a = el("a", `Save ${i.report_id}.mseal`, { download: `${i.report_id}.mseal` });
          a.href = URL.createObjectURL(i.sealed);
          li.append(a, " ");
        }
        const del = el("button", `Delete report ${i.report_id}`, { type: "button", class: "button secondary small" });
        del.addEventListener("click", async () => {
          await remove("queue", i.report_id).catch(() => {});
          showQueue();
        });
        li.append(del);
      }
      return li;
    });
    const others = items.length - mine.length;
    if (others) rows.push(el("li", `${others} more from another clinician, sent when they sign in on this phone.`));
    for (const r of results) {
      const li = el("li", r.text);
      if (r.url) {
        li.append(" ");
        li.append(el("a", r.url, { href: r.url }));
      }
      rows.push(li);
    }
    if (mine.length && lastTry) rows.push(el("li", lastTry, { class: "hint" }));
    $("cap-queue-list").replaceChildren(...rows);
    $("cap-queue").hidden = rows.length === 0;
    $("cap-send-now").hidden = mine.length === 0;
  }

  async function ticket() {
    const r = await api("/v1/sessions/ticket", { method: "POST" });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) {
      sessionEnded();
      throw new Refused("Your session has ended. Sign in again to send.");
    }
    if (!r.ok) throw new Refused(body.message || `The key server answered ${r.status}.`);
    return body.ticket;
  }

  // Sends what waits, oldest first; stops at the first failure, which is
  // kept to try again. Only the timer's own tries lengthen the wait.
  async function flush(byTimer = false) {
    if (flushing || !session()) return showQueue();
    flushing = true;
    try {
      const email = me();
      const items = (await all("queue")).filter((i) => i.user === email).sort((a, b) => a.made - b.made);
      lastTry = "";
      let tried = false;
      let waiting = false;
      for (const item of items) {
        if (item.failed) continue; // refused: waits for the clinician
        if (!navigator.onLine) {
          lastTry = "Not sent yet: this phone has no connection. It goes when the connection returns.";
          break;
        }
        let done;
        try {
          tried = true;
          done = await deliver(item);
        } catch (err) {
          if (!(err instanceof Refused)) throw err;
          // Refused for good (not a lost connection): kept aside, not
          // tried again, so that it holds up nothing behind it.
          item.failed = err.message;
          await put("queue", item);
          problem(err.message);
          continue;
        }
        if (!done) {
          waiting = true;
          break;
        }
        await remove("queue", item.report_id);
      }
      if (waiting && session()) {
        if (byTimer) retryIn = Math.min(retryIn * 2, RETRY_MAX_MS);
        nextTry = performance.now() + retryIn;
        const why = lastTry || `Not sent yet (${new Date().toLocaleTimeString()}): the receiver could not take it now.`;
        lastTry = `${why} Next try at ${new Date(Date.now() + retryIn).toLocaleTimeString()}, or when you press "Send now".`;
      } else if (tried) {
        retryIn = RETRY_MS;
        nextTry = null;
      }
    } catch {
      lastTry = "Not sent yet: the reports waiting here could not be read. Reload the page.";
    } finally {
      flushing = false;
      await showQueue();
    }
  }

  // Answers true when the item is done with, false when it must wait for
  // the connection; throws a Refused the clinician must act on.
  async function deliver(item) {
    let r;
    try {
      if (item.recipients.length) {
        r = await api(`/v1/keys/${encodeURIComponent(item.key_id)}/recipients`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ recipients: item.recipients }),
        });
        if (r.status === 401) {
          sessionEnded();
          return false;
        }
        if (!r.ok) {
          const body = await r.json().catch(() => ({}));
          throw new Refused(`Report ${item.report_id}: the recipients were refused: ${body.message || r.status}`);
        }
        item.recipients = [];
        await put("queue", item);
      }
      if (item.then === "send") {
        if (!org || !org.endpoint_url) await learnOrg();
        if (!org || !org.endpoint_url) throw new Refused("Your organisation has no receiving endpoint set. Ask an administrator, or share the report as a link.");
        const t = await ticket();
        const body = new FormData();
        body.append("token", t);
        body.append("device_id", session().device);
        body.append("report", item.sealed, `${item.report_id}.mseal`);
        // The endpoint's address may have a path (behind a proxy).
        const to = new URL(`${org.endpoint_url.replace(/\/+$/, "")}/v1/reports`);
        r = await fetch(to, { method: "POST", body, mode: "cors", credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
        const answer = await r.json().catch(() => ({}));
        if (r.status === 202 || r.status === 200) {
          results.push({ text: `Report ${item.report_id} was sent (receipt ${answer.id || "given"}).` });
          say(`Report ${item.report_id} was sent to ${to.origin}.`);
          $("cap-done-text").textContent = `Report ${item.report_id} was sent to ${to.origin}.`;
          return true;
        }
        if (r.status >= 500 || r.status === 429) {
          lastTry = `Not sent yet (${new Date().toLocaleTimeString()}): the receiving endpoint answered ${r.status}.`;
          return false;
        }
        throw new Refused(`The receiving endpoint refused report ${item.report_id}: ${answer.message || r.status}`);
      }
      if (item.then === "link") {
        const body = new FormData();
        body.append("report", item.sealed, `${item.report_id}.mseal`);
        r = await api("/v1/drops", { method: "POST", body });
        const answer = await r.json().catch(() => ({}));
        if (r.status === 401) {
          sessionEnded();
          return false;
        }
        if (r.status === 201) {
          results.push({ text: `Report ${item.report_id} can be opened until ${answer.expires_at} at`, url: answer.url });
          const a = el("a", answer.url, { href: answer.url });
          $("cap-done-link").replaceChildren(a);
          $("cap-done-text").textContent = `Report ${item.report_id} is shared. Send this link to its recipients:`;
          say("The link is ready.");
          return true;
        }
        if (r.status >= 500 || r.status === 429) {
          lastTry = `Not sent yet (${new Date().toLocaleTimeString()}): the key server answered ${r.status}.`;
          return false;
        }
        throw new Refused(`The key server did not share report ${item.report_id}: ${answer.message || r.status}`);
      }
      return true; // saved: the recipients were all it waited for
    } catch (err) {
      if (err instanceof Refused) throw err;
      lastTry = `Not sent yet (${new Date().toLocaleTimeString()}): ${err && err.message ? err.message.replace(/\.$/, "") : "no connection"}.`;
      return false; // no connection: it waits
    }
  }

  $("cap-send-now").addEventListener("click", () => {
    clearProblem();
    flush();
  });
  window.addEventListener("online", () => {
    retryIn = RETRY_MS;
    flush();
  });
  // A page loaded before the endpoint was set may not post there: the
  // browser refuses it (the key server's Content-Security-Policy), which
  // would otherwise look like a lost connection.
  document.addEventListener("securitypolicyviolation", (e) => {
    if (org && org.endpoint_url && e.blockedURI && e.blockedURI.startsWith(new URL(org.endpoint_url).origin)) {
      problem("This page may not reach your organisation's receiving endpoint yet. Reload the page; the report waits on this phone.");
    }
  });
  setInterval(() => {
    if (nextTry !== null && navigator.onLine && session() && performance.now() >= nextTry) flush(true);
  }, RETRY_MS / 4);

  return {
    async show() {
      $("capture").hidden = false;
      warmWorker();
      consentChanged();
      await learnOrg();
      await showQueue();
      flush();
      reserve().catch(() => {});
    },
    hide() {
      $("capture").hidden = true;
      closeCamera();
      dropWorker();
    },
    // Signing out: the keys taken in advance leave this phone, and are
    // revoked at the key server when it can be reached. Sealed reports
    // waiting here stay, for their clinician's next sign-in.
    async forget() {
      const email = me();
      if (recorder) await stopRecording().catch(() => {});
      const keys = (await all("keys").catch(() => [])).filter((k) => k.user === email);
      for (const k of keys) {
        await api(`/v1/keys/${encodeURIComponent(k.key_id)}/revoke`, { method: "POST" }).catch(() => null);
        await remove("keys", k.report_id).catch(() => {});
      }
      clearForm();
      dropWorker();
      org = null;
      results = [];
      lastTry = "";
      retryIn = RETRY_MS;
      nextTry = null;
      $("cap-done").hidden = true;
      $("capture-form").hidden = false;
      $("cap-done-link").replaceChildren();
      $("cap-queue-list").replaceChildren();
      $("cap-queue").hidden = true;
    },
  };
}
