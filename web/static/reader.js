// The second worker: reads the opened report out of the ring as the first
// worker decrypts it, and splits it into its files with the Rust code,
// checking each against the manifest. Runs beside the decryption, on
// another core. Answers { report, files }, { plain } (not a report: the
// bytes, to save) or { error }.
import init, { looksLikeReport } from "./medseal_web.js";
import { collector, splitReport } from "./bundle.js";
import { ringReader } from "./ring.js";

const ready = init({ module_or_path: new URL("medseal_web_bg.wasm", import.meta.url) }).then((wasm) => {
  // How much memory the WebAssembly holds, for the DevTools-based benchmark
  // (bench/browser-open.sh).
  self.wasmMemoryBytes = () => wasm.memory.buffer.byteLength;
});

self.onmessage = async (e) => {
  const reply = e.ports[0];
  let ring = null;
  try {
    await ready;
    ring = ringReader(e.data.ring);
    let consumed = 0;
    const next = (n) => {
      const piece = ring.read(n);
      consumed += piece.length;
      return piece;
    };
    // The first 512 bytes say whether this is a report.
    const first = [];
    let have = 0;
    for (;;) {
      const piece = next(512 - have);
      if (!piece.length) break;
      first.push(piece);
      have += piece.length;
      if (have >= 512) break;
    }
    const head = new Uint8Array(have);
    let o = 0;
    for (const p of first) { head.set(p, o); o += p.length; }
    if (!looksLikeReport(head)) {
      const plain = collector();
      plain.add(head);
      for (let p = next(1 << 20); p.length; p = next(1 << 20)) plain.add(p);
      return reply.postMessage({ plain: plain.done("application/octet-stream"), consumed });
    }
    let pending = head;
    const read = (n) => {
      if (pending) {
        const out = pending.subarray(0, n);
        pending = pending.length > n ? pending.subarray(n) : null;
        return out;
      }
      return next(n);
    };
    const report = splitReport(read);
    // Whatever follows the bundle's end is read too: the writer finishes,
    // so every frame is verified, and the counts can be compared.
    while (next(1 << 20).length);
    reply.postMessage({ ...report, consumed });
  } catch (err) {
    // Nothing more is read: the decrypting worker stops instead of waiting.
    if (ring) ring.stop();
    reply.postMessage({ error: err && err.class ? err : { class: "environment", message: String(err && err.message || err) } });
  }
};
