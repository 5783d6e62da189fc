// Runs the web app's viewer (the WebAssembly the key server serves, with its
// wasm-bindgen glue) under Node, as the browser's worker would: the sealed
// file is read a piece at a time through the `read` callback and the
// plaintext collected through `write`.
//
//   node wasm_open.mjs APP_DIR describe SEALED
//   node wasm_open.mjs APP_DIR key BASE64 SEALED OUT
//   node wasm_open.mjs APP_DIR password PASSWORD SEALED OUT
//
// Prints one JSON line: the header, {"length": n}, or {"error": {class, message}}.
import { readFileSync, openSync, readSync, writeFileSync, fstatSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [app, op, ...rest] = process.argv.slice(2);
const glue = await import(pathToFileURL(`${app}/medseal_web.js`).href);
glue.initSync({ module: readFileSync(`${app}/medseal_web_bg.wasm`) });

function reader(path) {
  const fd = openSync(path, "r");
  let at = 0;
  return {
    size: fstatSync(fd).size,
    read: (n) => {
      const buf = Buffer.alloc(Math.min(n, 1 << 20));
      const got = readSync(fd, buf, 0, buf.length, at);
      at += got;
      return new Uint8Array(buf.buffer, buf.byteOffset, got);
    },
  };
}

try {
  if (op === "describe") {
    const r = reader(rest[0]);
    console.log(glue.describe(r.read, r.size));
  } else {
    const [secret, sealed, out] = rest;
    const parts = [];
    const r = reader(sealed);
    const open = op === "key" ? glue.openWithKey : glue.openWithPassword;
    const length = open(r.read, secret, (p) => parts.push(Buffer.from(p)));
    writeFileSync(out, Buffer.concat(parts));
    console.log(JSON.stringify({ length }));
  }
} catch (e) {
  console.log(JSON.stringify({ error: e && e.class ? { class: e.class, message: e.message } : { class: "thrown", message: String(e) } }));
}
