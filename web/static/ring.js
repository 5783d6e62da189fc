// A byte ring in a SharedArrayBuffer, from the worker that decrypts (which
// writes, asynchronously, waiting while the ring is full) to the worker
// that reads the report (which reads synchronously, blocking with
// Atomics.wait while it is empty), so that the two run at once on two
// cores. Only the count of bytes held is shared; each side keeps its own
// position.
const USED = 0;
const STATE = 1; // 0 open, 1 closed (end of data), 2 aborted

export const RING_BYTES = 8 << 20;

export function newRing() {
  return { control: new SharedArrayBuffer(8), data: new SharedArrayBuffer(RING_BYTES) };
}

export function ringWriter({ control, data }) {
  const ctl = new Int32Array(control);
  const buf = new Uint8Array(data);
  let at = 0;
  return {
    async write(bytes) {
      let off = 0;
      while (off < bytes.length) {
        if (Atomics.load(ctl, STATE) === 2) throw new Error("the reader stopped");
        const used = Atomics.load(ctl, USED);
        const room = buf.length - used;
        if (room === 0) {
          // Woken by the reader taking bytes or stopping; the timeout only
          // re-checks, it never ends the wait on its own.
          const w = Atomics.waitAsync(ctl, USED, used, 1000);
          if (w.async) await w.value;
          continue;
        }
        const n = Math.min(room, bytes.length - off, buf.length - at);
        buf.set(bytes.subarray(off, off + n), at);
        at = (at + n) % buf.length;
        off += n;
        Atomics.add(ctl, USED, n);
        Atomics.notify(ctl, USED);
      }
    },
    close() {
      Atomics.store(ctl, STATE, 1);
      Atomics.notify(ctl, USED);
    },
    abort() {
      Atomics.store(ctl, STATE, 2);
      Atomics.notify(ctl, USED);
    },
  };
}

// The reader's side: `read(n)` blocks until bytes come, answers an empty
// array at the end; `stop()` tells the writer that nothing more is read.
export function ringReader({ control, data }) {
  const ctl = new Int32Array(control);
  const buf = new Uint8Array(data);
  let at = 0;
  const stop = () => {
    Atomics.store(ctl, STATE, 2);
    Atomics.notify(ctl, USED);
  };
  const read = (n) => {
    for (;;) {
      // The state first: a writer that adds its last bytes and then closes
      // between the two loads is seen as holding bytes, not as finished.
      const state = Atomics.load(ctl, STATE);
      const used = Atomics.load(ctl, USED);
      if (state === 2) throw new Error("opening stopped");
      if (used > 0) {
        const k = Math.min(n, used, buf.length - at);
        const out = buf.slice(at, at + k);
        at = (at + k) % buf.length;
        Atomics.sub(ctl, USED, k);
        Atomics.notify(ctl, USED);
        return out;
      }
      if (state === 1) return new Uint8Array(0);
      Atomics.wait(ctl, USED, 0, 1000);
    }
  };
  return { read, stop };
}
