// Opens a sealed report in headless Chromium's web app, driven over the
// DevTools protocol, and measures it: the time from "Open" to the report
// on the page, and the peak JavaScript heap of the page and its workers plus
// their WebAssembly memory, and (for comparison) every ArrayBuffer they
// held, garbage included, sampled every 25 ms. Run by bench/browser-open.sh.
//
//   node --experimental-websocket browser-open.mjs DEVTOOLS_PORT APP_URL REPORT EMAIL PASSWORD RUNS
import { readFileSync } from "node:fs";

const [port, appUrl, report, email, password, runsArg] = process.argv.slice(2);
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
    // Workers, and the workers they start (the viewer's reader).
    const s = msg.params.sessionId;
    workers.add(s);
    send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: true }, s).catch(() => {});
  } else if (msg.method === "Target.detachedFromTarget") {
    workers.delete(msg.params.sessionId);
  }
};
function send(method, params = {}, sessionId) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params, sessionId }));
  return new Promise((ok, fail) => pending.set(id, { ok, fail }));
}

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

await evaluate(until("document.readyState === 'complete' && document.getElementById('report-file')"));
const { root } = await send("DOM.getDocument", {}, page);
const { nodeId } = await send("DOM.querySelector", { nodeId: root.nodeId, selector: "#report-file" }, page);
await send("DOM.setFileInputFiles", { nodeId, files: [report] }, page);
await new Promise((r) => setTimeout(r, 500));

// The first open signs in (not measured): the session is then kept.
await evaluate("document.getElementById('open-button').click()");
await evaluate(until("!document.getElementById('signin').hidden"));
await evaluate(`(() => { document.getElementById('signin-email').value = ${JSON.stringify(email)};
  document.getElementById('signin-password').value = ${JSON.stringify(password)};
  document.getElementById('signin-form').requestSubmit(); })()`);
await evaluate(until("!document.getElementById('report').hidden || !document.getElementById('error-summary').hidden"));
const problem = await evaluate("document.getElementById('error-summary').hidden ? '' : document.getElementById('error-summary-text').textContent");
if (problem) throw new Error(`the app said: ${problem}`);

// One context's memory, sampled while it works: its JavaScript heap, and
// every ArrayBuffer backing store it holds (WebAssembly memory, and
// buffers already dropped and waiting for the collector). The inspector
// answers these between the worker's tasks, even while it is busy.
async function heap(session) {
  try {
    const h = await send("Runtime.getHeapUsage", {}, session);
    return { js: h.usedSize || 0, buffers: h.backingStorageSize || 0 };
  } catch {
    return { js: 0, buffers: 0 };
  }
}

// WebAssembly memory only grows: its size after the run is its peak. The
// workers say how large it is.
async function wasmBytes() {
  let total = 0;
  for (const s of [page, ...workers]) {
    try {
      const w = await send("Runtime.evaluate", {
        expression: "typeof wasmMemoryBytes === 'function' ? wasmMemoryBytes() : 0", returnByValue: true,
      }, s);
      total += (w.result && w.result.value) || 0;
    } catch {}
  }
  return total;
}

const size = readFileSync(report).length;
const results = [];
for (let run = 0; run < runs; run++) {
  for (const s of [page, ...workers]) await send("HeapProfiler.collectGarbage", {}, s).catch(() => {});
  let peakJs = 0;
  let peakAll = 0;
  let samples = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      let js = 0;
      let all = 0;
      for (const s of [page, ...workers]) {
        const h = await heap(s);
        js += h.js;
        all += h.js + h.buffers;
      }
      peakJs = Math.max(peakJs, js);
      peakAll = Math.max(peakAll, all);
      samples++;
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const ms = await evaluate(`(() => { document.getElementById('report').hidden = true;
    const t0 = performance.now(); document.getElementById('open-button').click();
    return ${until("!document.getElementById('report').hidden || !document.getElementById('error-summary').hidden")}.then(() => performance.now() - t0); })()`);
  sampling = false;
  await sampler;
  const wasm = await wasmBytes();
  results.push({ seconds: ms / 1000, peak_bytes: peakJs + wasm, peak_js: peakJs, wasm, peak_with_buffers: peakAll, samples });
}
const best = results.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
const peak = Math.max(...results.map((r) => r.peak_bytes));
const peakAll = Math.max(...results.map((r) => r.peak_with_buffers));
console.log(JSON.stringify({ size, best_seconds: best.seconds, mb_per_s: size / 1e6 / best.seconds, peak_heap_bytes: peak, peak_with_buffers: peakAll, runs: results }));
ws.close();
process.exit(0);
