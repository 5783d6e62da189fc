// The viewer's worker: reads the chosen file a frame at a time with
// FileReaderSync and opens it with the Rust code (medseal-web), keeping the
// plaintext as Blobs. Then, for a report, reads that plaintext again with
// the Rust code to split it into its files, each checked against the
// manifest. Nothing leaves this worker but the finished Blobs, and only
// when every chunk and every file verified.
import init, { describe, openWithKey, openWithPassword, readReport } from "./medseal_web.js";

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

function open(file, secret) {
  const plain = collector();
  const keep = (piece) => plain.add(piece);
  const length = secret.key !== undefined
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
      reply.postMessage(open(file, secret));
    }
  } catch (err) {
    reply.postMessage({ error: err && err.class ? err : { class: "environment", message: String(err) } });
  }
};
