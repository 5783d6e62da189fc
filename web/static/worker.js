// The viewer's worker. It opens the chosen file with WebCrypto doing the
// bulk AES-CBC and HMAC-SHA256 (native, about ten times the speed of the
// same work in WebAssembly) under the Rust code's control: the Rust code
// (medseal-web) authenticates the header, says where each frame is and
// what its tag covers, compares the tags in constant time and checks each
// plaintext length; a frame's plaintext goes on only after its tag
// verified. A second worker (reader.js) splits the plaintext into the
// report's files as it arrives, checking each against the manifest, on
// another core. Nothing leaves the workers but finished Blobs, and only
// when every chunk and every file verified.
import init, { describe, openWithKey, openWithPassword, planWithKey, planWithPassword } from "./medseal_web.js";
import { collector, splitReport } from "./bundle.js";
import { newRing, ringWriter } from "./ring.js";

const ready = init({ module_or_path: new URL("medseal_web_bg.wasm", import.meta.url) }).then((wasm) => {
  // How much memory the WebAssembly holds, for the DevTools-based benchmark
  // (bench/browser-open.sh).
  self.wasmMemoryBytes = () => wasm.memory.buffer.byteLength;
});
const subtle = self.crypto && self.crypto.subtle;
// The ring between the two workers needs a SharedArrayBuffer, which the
// browser gives only to a cross-origin-isolated page (the app's headers
// ask for it). Without it, the plaintext is kept as a Blob and split
// afterwards.
const shared = self.crossOriginIsolated && typeof SharedArrayBuffer === "function";
let splitter = null;

function reader(blob) {
  const sync = new FileReaderSync();
  let at = 0;
  return (n) => {
    const end = Math.min(at + n, blob.size);
    const bytes = new Uint8Array(sync.readAsArrayBuffer(blob.slice(at, end)));
    at = end;
    return bytes;
  };
}

function ask(w, message) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (e) => resolve(e.data);
    w.postMessage(message, [channel.port2]);
  });
}

const IN_FLIGHT = 4;

// Decrypts every frame of `file` with WebCrypto, in order, handing each
// verified plaintext to `keep` (which may wait). Answers the length.
async function decrypt(file, secret, keep) {
  const plan = secret.key !== undefined
    ? planWithKey(reader(file), secret.key, file.size)
    : planWithPassword(reader(file), secret.password, file.size);
  try {
    const raw = plan.exportKeys();
    let encKey;
    let macKey;
    try {
      encKey = await subtle.importKey("raw", raw.subarray(0, 32), "AES-CBC", false, ["encrypt", "decrypt"]);
      macKey = await subtle.importKey("raw", raw.subarray(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    } finally {
      raw.fill(0);
    }
    const frames = plan.frames();
    const one = async (i) => {
      const [offset, len, last] = plan.frame(i);
      const prefix = plan.macPrefix(i);
      const p = prefix.length;
      // Read with room for the tag's prefix in front (the bytes before a
      // frame are the header or the previous frame, overwritten here), so
      // that WebCrypto signs prefix ‖ IV ‖ ciphertext without a copy.
      const buf = new Uint8Array(await file.slice(offset - p, offset + len).arrayBuffer());
      if (buf.length !== p + len) throw { class: "damaged", message: `chunk ${i} could not be read whole` };
      const frame = buf.subarray(p);
      const stored = frame.slice(len - 32);
      buf.set(prefix, 0);
      const tag = new Uint8Array(await subtle.sign("HMAC", macKey, buf.subarray(0, p + len - 32)));
      try {
        plan.verify(i, tag, stored);
      } catch {
        throw plan.diagnose(i, new Uint8Array(await file.slice(offset, offset + len).arrayBuffer()));
      }
      const iv = frame.slice(0, 16);
      const ctEnd = len - 32;
      let body = frame.subarray(16, ctEnd);
      if (!last) {
        // WebCrypto's AES-CBC always strips PKCS#7 padding; a full chunk has
        // none, so put after it (where the tag was) the one block that
        // decrypts to a full padding block: E(0x10… XOR last ciphertext block).
        const pad = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv: frame.subarray(ctEnd - 16, ctEnd) }, encKey, new Uint8Array(0)));
        frame.set(pad.subarray(0, 16), ctEnd);
        body = frame.subarray(16, ctEnd + 16);
      }
      let plain;
      try {
        plain = new Uint8Array(await subtle.decrypt({ name: "AES-CBC", iv }, encKey, body));
      } catch {
        throw { class: "damaged", message: `chunk ${i}: malformed padding` };
      }
      plan.checkPlaintext(i, plain.length);
      return plain;
    };
    let length = 0;
    const running = [];
    let next = 0;
    const start = () => {
      const p = one(next++);
      p.catch(() => {}); // answered where it is awaited, in order
      running.push(p);
    };
    while (next < frames && running.length < IN_FLIGHT) start();
    while (running.length) {
      const plain = await running.shift();
      if (next < frames) start();
      await keep(plain);
      length += plain.length;
    }
    return length;
  } finally {
    plan.free();
  }
}

// Opens and splits side by side: decryption here, the report's files in
// the second worker, through the ring.
async function openShared(file, secret) {
  if (!splitter) splitter = new Worker(new URL("reader.js", import.meta.url), { type: "module" });
  const ring = newRing();
  const out = ringWriter(ring);
  const split = ask(splitter, { ring });
  let length;
  try {
    length = await decrypt(file, secret, (plain) => out.write(plain));
    out.close();
  } catch (err) {
    out.abort();
    const answer = await split; // the reader has stopped
    // The reader stopping first (a bundle that breaks its manifest) is the
    // reason; otherwise the decryption's own error is.
    throw answer.error && String(err && err.message).includes("reader stopped") ? answer.error : err;
  }
  const answer = await split;
  if (answer.error) throw answer.error;
  if (answer.consumed !== length) {
    throw { class: "environment", message: "the report was not read whole; try again" };
  }
  const { consumed, ...opened } = answer;
  return { ...opened, length };
}

// Opens, keeping the plaintext as a Blob, then splits it.
async function openThenSplit(file, secret) {
  const plain = collector();
  const keep = (piece) => plain.add(piece);
  const length = subtle
    ? await decrypt(file, secret, keep)
    : secret.key !== undefined
      ? openWithKey(reader(file), secret.key, keep)
      : openWithPassword(reader(file), secret.password, keep);
  const opened = plain.done("application/octet-stream");
  const report = splitReport(reader(opened));
  return report ? { ...report, length } : { plain: opened, length };
}

self.onmessage = async (e) => {
  const { op, file, secret } = e.data;
  const reply = e.ports[0];
  try {
    await ready;
    if (op === "describe") {
      reply.postMessage({ header: JSON.parse(describe(reader(file), file.size)) });
    } else if (op === "open") {
      reply.postMessage(await (shared && subtle ? openShared(file, secret) : openThenSplit(file, secret)));
    }
  } catch (err) {
    reply.postMessage({ error: err && err.class ? err : { class: "environment", message: String(err && err.message || err) } });
  }
};
