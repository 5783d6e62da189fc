// The viewer's worker: reads the chosen file a frame at a time with
// FileReaderSync and opens it with the Rust code (medseal-web), keeping the
// plaintext as Blob parts. Nothing leaves this worker but the finished Blob,
// and only when every chunk verified.
import init, { describe, openWithKey, openWithPassword } from "./medseal_web.js";

const ready = init({ module_or_path: new URL("medseal_web_bg.wasm", import.meta.url) });

function reader(file) {
  const sync = new FileReaderSync();
  let at = 0;
  return (n) => {
    const end = Math.min(at + n, file.size);
    const bytes = new Uint8Array(sync.readAsArrayBuffer(file.slice(at, end)));
    at = end;
    return bytes;
  };
}

self.onmessage = async (e) => {
  const { op, file, secret } = e.data;
  const reply = e.ports[0];
  try {
    await ready;
    if (op === "describe") {
      reply.postMessage({ header: JSON.parse(describe(reader(file), file.size)) });
    } else if (op === "open") {
      const parts = [];
      const keep = (piece) => parts.push(piece);
      const length = secret.key !== undefined
        ? openWithKey(reader(file), secret.key, keep)
        : openWithPassword(reader(file), secret.password, keep);
      reply.postMessage({ blob: new Blob(parts), length });
    }
  } catch (err) {
    reply.postMessage({ error: err && err.class ? err : { class: "environment", message: String(err) } });
  }
};
