// What both workers share: gathering bytes into Blobs, the media types the
// page may render, and splitting an opened report into its files with the
// Rust code (medseal-web's readReport, which checks every file against the
// manifest).
import { readReport } from "./medseal_web.js";

// Gathers pieces into a Blob, folding them in every few megabytes so that
// the pieces can be collected and a 200 MB video never sits in the heap:
// the browser keeps Blob contents outside it (on disk when large).
const FOLD = 4 << 20;
export function collector() {
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

// Reads an opened report through `read(n)` (synchronous, empty at the end)
// and answers { report, files } once every file matched the manifest, or
// null when the plaintext is not a report bundle. Throws {class, message}.
export function splitReport(read) {
  const files = new Map();
  const manifestJson = readReport(read, (path, piece) => {
    if (!files.has(path)) files.set(path, collector());
    files.get(path).add(piece);
  });
  if (manifestJson === null || manifestJson === undefined) return null;
  const manifest = JSON.parse(manifestJson);
  const types = new Map(manifest.media.map((m) => [m.path, m.mime_type]));
  const out = [];
  for (const [path, c] of files) {
    const declared = path === "report.pdf" ? "application/pdf" : types.get(path) || "";
    const type = path === "report.pdf" || SHOWN.test(declared) ? declared : "application/octet-stream";
    out.push({ path, blob: c.done(type) });
  }
  return { report: manifest, files: out };
}
