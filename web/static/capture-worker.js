// The capture worker: builds and seals one report with the Rust code of
// `medseal capture` (medseal-web's Capture), then is ended by the page, so
// the WebAssembly memory that held the photos goes with it.
//
// `build`: the form's answers and the files (Blobs, read here one at a
// time and handed over, the copy in this worker's heap dropped at once);
// answers the manifest or the refusal. `seal`: the key server's key for
// the report; answers the sealed file as a Blob (`blob`), sealed by
// WebCrypto under the Rust code's control where the page has it.
import init, { Capture } from "./medseal_capture.js";

const ready = init({ module_or_path: new URL("medseal_capture_bg.wasm", import.meta.url) }).then((wasm) => {
  // How much memory the WebAssembly holds, for bench/browser-capture.sh.
  self.wasmMemoryBytes = () => wasm.memory.buffer.byteLength;
});

let capture = null;

const failed = (e) => ({
  error: e && e.message ? { class: e.class || "environment", message: e.message } : { class: "environment", message: String(e) },
});

async function build(m) {
  const t0 = performance.now();
  capture = new Capture(JSON.stringify(m.form), m.reportId, m.createdAt, m.offset);
  // Each file is read while the one before it is handed over: at most two
  // are in this worker's heap at once.
  let next = m.files.length ? m.files[0].blob.arrayBuffer() : null;
  for (let i = 0; i < m.files.length; i++) {
    const bytes = new Uint8Array(await next);
    next = i + 1 < m.files.length ? m.files[i + 1].blob.arrayBuffer() : null;
    capture.add(m.files[i].kind, m.files[i].name, bytes);
  }
  const t1 = performance.now();
  const manifest = capture.build();
  return { manifest, ms: performance.now() - t0, intakeMs: t1 - t0, wasmBytes: self.wasmMemoryBytes() };
}

const subtle = self.crypto && self.crypto.subtle;
// Frames WebCrypto works on at once: enough to keep its threads busy, few
// enough that the plaintext in flight stays a few megabytes.
const IN_FLIGHT = 4;

// Gathers the sealed file a few frames at a time into Blobs, so that it
// never sits whole in this worker's heap.
function gatherer() {
  const blobs = [];
  let pending = [];
  return {
    add(...pieces) {
      pending.push(...pieces);
      if (pending.length >= 16) {
        blobs.push(new Blob(pending));
        pending = [];
      }
    },
    done() {
      blobs.push(new Blob(pending));
      return new Blob(blobs, { type: "application/octet-stream" });
    },
  };
}

// Seals with WebCrypto doing the bulk AES-CBC and HMAC-SHA256 (native,
// several times the speed of the same work in WebAssembly) under the Rust
// code's control (medseal-web's SealPlan): the plaintext is cut into
// chunks, each IV drawn and each tag's prefix given there, and what
// WebCrypto produced checked there (every frame's lengths, IV, and first
// and final blocks; the last frame opened whole with the file's keys).
async function sealWithWebCrypto(m) {
  const plan = capture.sealPlan(m.origin, m.keyId, m.key);
  capture.free();
  capture = null;
  try {
    const raw = plan.exportKeys();
    let encKey;
    let macKey;
    try {
      encKey = await subtle.importKey("raw", raw.subarray(0, 32), "AES-CBC", false, ["encrypt"]);
      macKey = await subtle.importKey("raw", raw.subarray(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    } finally {
      raw.fill(0);
    }
    const one = async (frame) => {
      try {
        const iv = frame.iv();
        const prefix = frame.macPrefix();
        const plain = frame.takePlaintext();
        let ct;
        try {
          ct = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, encKey, plain));
        } finally {
          plain.fill(0);
        }
        // WebCrypto always pads; a full chunk's padding is its final block
        // alone, which the format does not have.
        if (!frame.last) ct = ct.subarray(0, ct.length - 16);
        const signed = new Uint8Array(prefix.length + 16 + ct.length);
        signed.set(prefix, 0);
        signed.set(iv, prefix.length);
        signed.set(ct, prefix.length + 16);
        const tag = new Uint8Array(await subtle.sign("HMAC", macKey, signed));
        const body = signed.subarray(prefix.length);
        plan.accept(frame, body, tag);
        return [body, tag];
      } finally {
        frame.free();
      }
    };
    const out = gatherer();
    out.add(plan.header());
    const running = [];
    let more = true;
    const start = () => {
      const frame = plan.next();
      if (!frame) {
        more = false;
        return;
      }
      const p = one(frame);
      p.catch(() => {}); // answered where it is awaited, in order
      running.push(p);
    };
    while (more && running.length < IN_FLIGHT) start();
    while (running.length) {
      out.add(...(await running.shift()));
      if (more) start();
    }
    const blob = out.done();
    if (blob.size !== plan.finish()) {
      throw { class: "seal", message: "the sealed report is not the length it should be; seal it again" };
    }
    return { blob, size: blob.size };
  } finally {
    plan.free();
  }
}

// Seals in WebAssembly: for a page without WebCrypto (one not served over
// HTTPS or from this device).
function sealInWasm(m) {
  const out = gatherer();
  const size = capture.seal(m.origin, m.keyId, m.key, (bytes) => out.add(bytes));
  capture.free();
  capture = null;
  return { blob: out.done(), size };
}

async function seal(m) {
  const t0 = performance.now();
  if (!capture) return { error: { class: "refused", message: "Nothing to seal." } };
  const sealed = subtle ? await sealWithWebCrypto(m) : sealInWasm(m);
  return { ...sealed, ms: performance.now() - t0, wasmBytes: self.wasmMemoryBytes() };
}

self.onmessage = async (e) => {
  const port = e.ports[0];
  let answer;
  try {
    await ready;
    answer = e.data.op === "build" ? await build(e.data) : await seal(e.data);
  } catch (err) {
    answer = failed(err);
  }
  port.postMessage(answer);
};
