// Captures a report in headless Chromium's web app, driven over the
// DevTools protocol: the form filled, the photos chosen in "Add photos",
// "Seal report" with "Save the sealed file on this phone", timed until the
// page says it is sealed. Samples the JavaScript heap of the page and its
// workers every 25 ms and adds the capture worker's WebAssembly memory at
// its largest (the worker ends with each report, so its memory goes with
// it). Run by bench/browser-capture.sh.
//
//   node --experimental-websocket browser-capture.mjs DEVTOOLS_PORT APP_URL EMAIL PASSWORD RUNS PHOTO…
const [port, appUrl, email, password, runsArg, ...photos] = process.argv.slice(2);
const runs = Number(runsArg || 3);

const version = await (await fetch(`http://127.0.0.1:${port}/json/version`)).json();
const ws = new WebSocket(version.webSocketDebuggerUrl);
await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });

let nextId = 1;
const pending = new Map();
const workers = new Set();
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if (msg.id && pending.has(msg.id)) {
    const { ok, fail } = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) fail(new Error(JSON.stringify(msg.error)));
    else ok(msg.result);
  } else if (msg.method === "Target.attachedToTarget" && msg.params.targetInfo.type === "worker") {
    workers.add(msg.params.sessionId);
  } else if (msg.method === "Target.detachedFromTarget") {
    workers.delete(msg.params.sessionId);
  }
};
function send(method, params = {}, sessionId) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params, sessionId }));
  return new Promise((ok, fail) => pending.set(id, { ok, fail }));
}

await send("Browser.setDownloadBehavior", { behavior: "deny" }).catch(() => {});
const { targetId } = await send("Target.createTarget", { url: "about:blank" });
const { sessionId: page } = await send("Target.attachToTarget", { targetId, flatten: true });
await send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: true }, page);
await send("Runtime.enable", {}, page);
await send("Page.enable", {}, page);
await send("Page.navigate", { url: appUrl }, page);

async function evaluate(expression) {
  const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, page);
  if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
  return r.result.value;
}
const until = (cond) => `new Promise((ok, fail) => { const t0 = performance.now(); const tick = () => {
  if (${cond}) ok(performance.now() - t0); else if (performance.now() - t0 > 600000) fail("timeout");
  else setTimeout(tick, 5); }; tick(); })`;
const problem = () => evaluate("document.getElementById('error-summary').hidden ? '' : document.getElementById('error-summary-text').textContent");

await evaluate(until("document.readyState === 'complete' && !document.getElementById('signin').hidden"));
await evaluate(`(() => { document.getElementById('signin-email').value = ${JSON.stringify(email)};
  document.getElementById('signin-password').value = ${JSON.stringify(password)};
  document.getElementById('signin-form').requestSubmit(); })()`);
await evaluate(until("!document.getElementById('capture-form').hidden || !document.getElementById('error-summary').hidden"));
if (await problem()) throw new Error(`the app said: ${await problem()}`);
// Keys taken in advance are made once the form shows; let that finish.
await new Promise((r) => setTimeout(r, 1500));

async function heap(session) {
  try {
    return (await send("Runtime.getHeapUsage", {}, session)).usedSize || 0;
  } catch {
    return 0;
  }
}

const results = [];
for (let run = 0; run < runs; run++) {
  await evaluate(`(() => { const $ = (id) => document.getElementById(id);
    $('cap-done').hidden = true; $('capture-form').hidden = false;
    $('cap-patient').value = 'P1'; $('cap-system').value = 'urn:medseal:pseudonym';
    $('cap-consent').value = 'verbal-witnessed'; $('cap-consent').dispatchEvent(new Event('change'));
    $('cap-witness').value = 'Nurse B';
    document.querySelector('input[name=then][value=save]').checked = true; })()`);
  const { root } = await send("DOM.getDocument", {}, page);
  const { nodeId } = await send("DOM.querySelector", { nodeId: root.nodeId, selector: "#cap-photos" }, page);
  await send("DOM.setFileInputFiles", { nodeId, files: photos }, page);
  await evaluate(until(`document.querySelectorAll('#cap-media img').length === ${photos.length}`));
  for (const s of [page, ...workers]) await send("HeapProfiler.collectGarbage", {}, s).catch(() => {});
  await evaluate("self.captureWasmPeak = 0");
  let peakJs = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      let js = 0;
      for (const s of [page, ...workers]) js += await heap(s);
      peakJs = Math.max(peakJs, js);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const ms = await evaluate(`(() => { const t0 = performance.now();
    document.getElementById('capture-form').requestSubmit();
    return ${until("!document.getElementById('cap-done').hidden || !document.getElementById('error-summary').hidden")}.then(() => performance.now() - t0); })()`);
  sampling = false;
  await sampler;
  if (await problem()) throw new Error(`the app said: ${await problem()}`);
  const wasm = await evaluate("self.captureWasmPeak || 0");
  results.push({ seconds: ms / 1000, peak_js: peakJs, wasm, peak_bytes: peakJs + wasm });
}
const best = results.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
console.log(JSON.stringify({ best_seconds: best.seconds, peak_bytes: Math.max(...results.map((r) => r.peak_bytes)), runs: results }));
ws.close();
process.exit(0);
