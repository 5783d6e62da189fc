// The viewer's worker: reads the chosen file a frame at a time with
// FileReaderSync and opens it with the Rust code (medseal-web), keeping the
// plaintext as Blobs. Then, for a report, reads that plaintext again with
// the Rust code to split it into its files, each checked against the
// manifest. Nothing leaves this worker but the finished Blobs, and only
// when every chunk and every file verified.
import init, { describe, openWithKey, openWithPassword, planWithKey, planWithPassword, readReport } from "./medseal_web.js";

const ready = init({ module_or_path: new URL("medseal_web_bg.wasm", import.meta.url) });

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

// Gathers pieces into a Blob, folding them in every few megabytes so that
// the pieces can be collected and a 200 MB video never sits in the heap:
// the browser keeps Blob contents outside it (on disk when large).
const FOLD = 4 << 20;
function collector() {
  let blob = new Blob([]);
  let parts = [];
  let held = 0;
  return {
    add(piece) {
      parts.push(piece);
      held += piece.length;
      if (held >= FOLD) {
        blob = new Blob([blob, ...parts]);
        parts = [];
        held = 0;
      }
    },
    done(type) {
      const whole = new Blob([blob, ...parts], { type });
      parts = [];
      return whole;
    },
  };
}

// Only these types are given to the page's players and viewers; anything
// else in a manifest is kept as bytes to save, never rendered.
const SHOWN = /^(image\/(jpeg|png|webp|gif|heic|heif)|audio\/(mpeg|mp4|ogg|webm|wav|x-wav|aac|flac)|video\/(mp4|webm|ogg|quicktime))$/;

// Opening with WebCrypto doing the bulk AES-CBC and HMAC-SHA256 (native,
// about ten times the speed of the same work in WebAssembly) under the Rust
// code's control: it authenticates the header, says where each frame is and
// what its tag covers, compares the tags in constant time, and checks each
// plaintext length. A frame's plaintext is kept only after its tag
// verified; a few frames are in flight at once.
const IN_FLIGHT = 4;
const subtle = self.crypto && self.crypto.subtle;

async function openWithWebCrypto(file, secret, keep) {
  const plan = secret.key !== undefined
    ? planWithKey(reader(file), secret.key, file.size)
    : planWithPassword(reader(file), secret.password, file.size);
  try {
    const raw = plan.exportKeys();
    const encKey = await subtle.importKey("raw", raw.subarray(0, 32), "AES-CBC", false, ["encrypt", "decrypt"]);
    const macKey = await subtle.importKey("raw", raw.subarray(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    raw.fill(0);
    const frames = plan.frames();
    const one = async (i) => {
      const [offset, len, last] = plan.frame(i);
      const frame = new Uint8Array(await file.slice(offset, offset + len).arrayBuffer());
      if (frame.length !== len) throw { class: "damaged", message: `chunk ${i} could not be read whole` };
      const prefix = plan.macPrefix(i);
      const authed = new Uint8Array(prefix.length + len - 32);
      authed.set(prefix);
      authed.set(frame.subarray(0, len - 32), prefix.length);
      const tag = new Uint8Array(await subtle.sign("HMAC", macKey, authed));
      try {
        plan.verify(i, tag, frame.subarray(len - 32));
      } catch {
        throw plan.diagnose(i, frame);
      }
      const iv = frame.subarray(0, 16);
      let body = frame.subarray(16, len - 32);
      if (!last) {
        // WebCrypto's AES-CBC always strips PKCS#7 padding; a full chunk has
        // none, so append the one block that decrypts to a full padding
        // block: E(0x10… XOR the last ciphertext block).
        const pad = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv: body.subarray(body.length - 16) }, encKey, new Uint8Array(0)));
        const padded = new Uint8Array(body.length + 16);
        padded.set(body);
        padded.set(pad.subarray(0, 16), body.length);
        body = padded;
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
      keep(plain);
      length += plain.length;
    }
    return length;
  } finally {
    plan.free();
  }
}

async function open(file, secret) {
  const plain = collector();
  const keep = (piece) => plain.add(piece);
  const length = subtle
    ? await openWithWebCrypto(file, secret, keep)
    : secret.key !== undefined
      ? openWithKey(reader(file), secret.key, keep)
      : openWithPassword(reader(file), secret.password, keep);
  const opened = plain.done("application/octet-stream");
  const files = new Map();
  const manifestJson = readReport(reader(opened), (path, piece) => {
    if (!files.has(path)) files.set(path, collector());
    files.get(path).add(piece);
  });
  if (manifestJson === null || manifestJson === undefined) {
    return { plain: opened, length };
  }
  const manifest = JSON.parse(manifestJson);
  const types = new Map(manifest.media.map((m) => [m.path, m.mime_type]));
  const out = [];
  for (const [path, c] of files) {
    const declared = path === "report.pdf" ? "application/pdf" : types.get(path) || "";
    const type = path === "report.pdf" || SHOWN.test(declared) ? declared : "application/octet-stream";
    out.push({ path, blob: c.done(type) });
  }
  return { report: manifest, files: out, length };
}

self.onmessage = async (e) => {
  const { op, file, secret } = e.data;
  const reply = e.ports[0];
  try {
    await ready;
    if (op === "describe") {
      reply.postMessage({ header: JSON.parse(describe(reader(file), file.size)) });
    } else if (op === "open") {
      reply.postMessage(await open(file, secret));
    }
  } catch (err) {
    reply.postMessage({ error: err && err.class ? err : { class: "environment", message: String(err) } });
  }
};
