// The DevTools protocol over one WebSocket, for the browser benchmarks:
// a page opened and attached (flattened sessions), the workers it starts
// tracked as they come and go, and the helpers both benchmarks use.
//
//   const dt = await openPage(port, url);
//   await dt.evaluate("1 + 1");  await dt.until("document.readyState === 'complete'");
//   dt.send(method, params, sessionId);  dt.page;  dt.workers;  dt.close();

export async function openPage(port, url) {
  const version = await (await fetch(`http://127.0.0.1:${port}/json/version`)).json();
  const ws = new WebSocket(version.webSocketDebuggerUrl);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });

  let nextId = 1;
  const pending = new Map();
  const workers = new Set();
  const send = (method, params = {}, sessionId) => {
    const id = nextId++;
    ws.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((ok, fail) => pending.set(id, { ok, fail, sessionId }));
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) {
      const { ok, fail } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) fail(new Error(JSON.stringify(msg.error)));
      else ok(msg.result);
    } else if (msg.method === "Target.attachedToTarget" && msg.params.targetInfo.type === "worker") {
      // Workers, and the workers they start (the viewer's reader).
      const s = msg.params.sessionId;
      workers.add(s);
      send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: true }, s).catch(() => {});
    } else if (msg.method === "Target.detachedFromTarget") {
      // A worker that ended answers nothing more: what was asked of it fails.
      const gone = msg.params.sessionId;
      workers.delete(gone);
      for (const [id, p] of pending) {
        if (p.sessionId === gone) {
          pending.delete(id);
          p.fail(new Error("the target has gone"));
        }
      }
    }
  };

  await send("Browser.setDownloadBehavior", { behavior: "deny" }).catch(() => {});
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId: page } = await send("Target.attachToTarget", { targetId, flatten: true });
  await send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: true }, page);
  await send("Runtime.enable", {}, page);
  await send("Page.enable", {}, page);
  await send("Page.navigate", { url }, page);

  async function evaluate(expression) {
    const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }, page);
    if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
    return r.result.value;
  }
  // An expression: a promise of the milliseconds until `cond` holds.
  const untilExpr = (cond) => `new Promise((ok, fail) => { const t0 = performance.now(); const tick = () => {
    if (${cond}) ok(performance.now() - t0); else if (performance.now() - t0 > 600000) fail("timeout");
    else setTimeout(tick, 5); }; tick(); })`;
  const until = (cond) => evaluate(untilExpr(cond));
  // Sets the files of the input matching `selector`.
  async function setFiles(selector, files) {
    const { root } = await send("DOM.getDocument", {}, page);
    const { nodeId } = await send("DOM.querySelector", { nodeId: root.nodeId, selector }, page);
    await send("DOM.setFileInputFiles", { nodeId, files }, page);
  }
  // Signs in with the app's form (the session is then kept by the tab).
  async function signIn(email, password) {
    await evaluate(`(() => { document.getElementById('signin-email').value = ${JSON.stringify(email)};
      document.getElementById('signin-password').value = ${JSON.stringify(password)};
      document.getElementById('signin-form').requestSubmit(); })()`);
  }
  const problem = () => evaluate("document.getElementById('error-summary').hidden ? '' : document.getElementById('error-summary-text').textContent");
  // One context's memory: its JavaScript heap, and every ArrayBuffer
  // backing store it holds (WebAssembly memory, and buffers already
  // dropped and waiting for the collector). The inspector answers between
  // a worker's tasks, even while it is busy.
  async function heap(session) {
    try {
      // A worker ending as it is asked may not say so: wait a second at most.
      const h = await Promise.race([
        send("Runtime.getHeapUsage", {}, session),
        new Promise((_, fail) => setTimeout(() => fail(new Error("no answer")), 1000)),
      ]);
      return { js: h.usedSize || 0, buffers: h.backingStorageSize || 0 };
    } catch {
      return { js: 0, buffers: 0 };
    }
  }
  return { send, page, workers, evaluate, until, untilExpr, setFiles, signIn, problem, heap, close: () => ws.close() };
}
