// Captures a report in headless Chromium's web app, driven over the
// DevTools protocol: the form filled, the photos chosen in "Add photos",
// "Seal report" with "Save the sealed file on this phone", timed until the
// page says it is sealed. Samples the JavaScript heap of the page and its
// workers every 25 ms and adds the capture worker's WebAssembly memory at
// its largest (the worker ends with each report, so its memory goes with
// it). Run by bench/browser-capture.sh.
//
//   node --experimental-websocket browser-capture.mjs DEVTOOLS_PORT APP_URL EMAIL PASSWORD RUNS PHOTO…
import { openPage } from "./lib/devtools.mjs";

const [port, appUrl, email, password, runsArg, ...photos] = process.argv.slice(2);
const runs = Number(runsArg || 3);

const dt = await openPage(port, appUrl);
const { send, page, workers, evaluate, problem } = dt;
const until = dt.untilExpr;

await evaluate(until("document.readyState === 'complete' && !document.getElementById('signin').hidden"));
await dt.signIn(email, password);
await evaluate(until("!document.getElementById('capture-form').hidden || !document.getElementById('error-summary').hidden"));
if (await problem()) throw new Error(`the app said: ${await problem()}`);
// Keys taken in advance are made once the form shows; let that finish.
await new Promise((r) => setTimeout(r, 1500));

const results = [];
for (let run = 0; run < runs; run++) {
  await evaluate(`(() => { const $ = (id) => document.getElementById(id);
    $('cap-done').hidden = true; $('capture-form').hidden = false;
    $('cap-patient').value = 'P1'; $('cap-system').value = 'urn:medseal:pseudonym';
    $('cap-consent').value = 'verbal-witnessed'; $('cap-consent').dispatchEvent(new Event('change'));
    $('cap-witness').value = 'Nurse B';
    document.querySelector('input[name=then][value=save]').checked = true; })()`);
  await dt.setFiles("#cap-photos", photos);
  await evaluate(until(`document.querySelectorAll('#cap-media img').length === ${photos.length}`));
  for (const s of [page, ...workers]) await send("HeapProfiler.collectGarbage", {}, s).catch(() => {});
  await evaluate("self.captureWasmPeak = 0");
  let peakJs = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      let js = 0;
      for (const s of [page, ...workers]) js += (await dt.heap(s)).js;
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
  const stages = await evaluate("self.captureStages || null");
  results.push({ seconds: ms / 1000, peak_js: peakJs, wasm, peak_bytes: peakJs + wasm, stages });
}
const best = results.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
console.log(JSON.stringify({ best_seconds: best.seconds, peak_bytes: Math.max(...results.map((r) => r.peak_bytes)), runs: results }));
dt.close();
process.exit(0);
