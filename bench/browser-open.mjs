// Opens a sealed report in headless Chromium's web app, driven over the
// DevTools protocol, and measures it: the time from "Open" to the report
// on the page, and the peak JavaScript heap of the page and its workers plus
// their WebAssembly memory, and (for comparison) every ArrayBuffer they
// held, garbage included, sampled every 25 ms. Run by bench/browser-open.sh.
//
//   node --experimental-websocket browser-open.mjs DEVTOOLS_PORT APP_URL REPORT EMAIL PASSWORD RUNS
import { readFileSync } from "node:fs";
import { openPage } from "./lib/devtools.mjs";

const [port, appUrl, report, email, password, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 3);

const dt = await openPage(port, appUrl);
const { send, page, workers, evaluate } = dt;
const until = dt.untilExpr;

await evaluate(until("document.readyState === 'complete' && document.getElementById('report-file')"));
await dt.setFiles("#report-file", [report]);
await new Promise((r) => setTimeout(r, 500));

// The first open signs in (not measured): the session is then kept.
await evaluate("document.getElementById('open-button').click()");
await evaluate(until("!document.getElementById('signin').hidden"));
await dt.signIn(email, password);
await evaluate(until("!document.getElementById('report').hidden || !document.getElementById('error-summary').hidden"));
const problem = await dt.problem();
if (problem) throw new Error(`the app said: ${problem}`);

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
        const h = await dt.heap(s);
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
dt.close();
process.exit(0);
