// The capture worker: builds and seals one report with the Rust code of
// `medseal capture` (medseal-web's Capture), then is ended by the page, so
// the WebAssembly memory that held the photos goes with it.
//
// `build`: the form's answers and the files (Blobs, read here one at a
// time and handed over, the copy in this worker's heap dropped at once);
// answers the manifest or the refusal. `seal`: the key server's key for
// the report; answers the sealed file as a Blob (`blob`), gathered a few frames at
// a time so that it never sits whole in this worker's heap.
import init, { Capture } from "./medseal_web.js";

const ready = init({ module_or_path: new URL("medseal_web_bg.wasm", import.meta.url) }).then((wasm) => {
  // How much memory the WebAssembly holds, for bench/browser-capture.sh.
  self.wasmMemoryBytes = () => wasm.memory.buffer.byteLength;
});

let capture = null;

const failed = (e) => ({
  error: e && e.message ? { class: e.class || "environment", message: e.message } : { class: "environment", message: String(e) },
});

async function build(m) {
  capture = new Capture(JSON.stringify(m.form), m.reportId, m.createdAt, m.offset);
  for (const f of m.files) {
    capture.add(f.kind, f.name, new Uint8Array(await f.blob.arrayBuffer()));
  }
  return { manifest: capture.build(), wasmBytes: self.wasmMemoryBytes() };
}

function seal(m) {
  if (!capture) return { error: { class: "refused", message: "Nothing to seal." } };
  const blobs = [];
  let pending = [];
  const size = capture.seal(m.origin, m.keyId, m.key, (bytes) => {
    pending.push(bytes);
    if (pending.length >= 8) {
      blobs.push(new Blob(pending));
      pending = [];
    }
  });
  blobs.push(new Blob(pending));
  capture.free();
  capture = null;
  return { blob: new Blob(blobs, { type: "application/octet-stream" }), size, wasmBytes: self.wasmMemoryBytes() };
}

self.onmessage = async (e) => {
  const port = e.ports[0];
  let answer;
  try {
    await ready;
    answer = e.data.op === "build" ? await build(e.data) : seal(e.data);
  } catch (err) {
    answer = failed(err);
  }
  port.postMessage(answer);
};
