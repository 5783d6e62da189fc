// The organisation console (#/console): users, reports and their keys,
// the audit log and the organisation's settings, for its admins (who
// manage) and auditors (who read and export). Every screen is a call of
// the key server's console API with the browser session; the server
// decides who may do what, and records it. Nothing here is trusted to
// hide anything: buttons an auditor may not use are left out only to keep
// the screens plain.
//
// Everything from the server is put on the page as text (textContent),
// never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const PANELS = ["c-overview", "c-users", "c-reports", "c-report", "c-audit", "c-settings"];
const PAGE = 50;

/// A refusal the page can say in one line.
class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.append(c);
    else td.textContent = c === null || c === undefined ? "" : String(c);
    tr.append(td);
  }
  return tr;
}

// Fills a table's body; each cell carries its column's name, which a
// phone-sized screen shows beside it (the rows become cards).
function fill(table, rows) {
  const names = Array.from($(table).tHead.rows[0].cells, (th) => th.textContent.trim());
  for (const tr of rows) {
    Array.from(tr.cells).forEach((td, i) => {
      if (names[i] && tr.cells.length > 1) td.dataset.label = names[i];
    });
  }
  $(table).tBodies[0].replaceChildren(...rows);
}

function fact(list, term, value) {
  list.append(el("dt", term), el("dd", value === null || value === undefined || value === "" ? "—" : value));
}

// Times as people read them, in the browser's own zone; the exports keep
// the server's RFC 3339.
function when(t) {
  if (!t) return "never";
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? t : d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

/// The console, given the page's API call and its ways of speaking.
export function createConsole({ api, problem, clearProblem, say, sessionEnded }) {
  let me = null; // { email, org, role }
  let auditPages = []; // `before` cursors of the pages shown, for "Newer events"
  let auditShown = null; // the query of the page on screen: what Export exports
  let reportsOffset = 0;

  async function call(path, options = {}) {
    const opts = { ...options };
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers = { ...(opts.headers || {}), "Content-Type": "application/json" };
      delete opts.json;
    }
    const r = await api(path, opts);
    if (r.status === 401) {
      sessionEnded();
      throw new Refused(401, "Your session has ended. Sign in again.");
    }
    if (opts.raw && r.ok) return r;
    const body = r.status === 204 ? {} : await r.json().catch(() => ({}));
    if (!r.ok) {
      if (r.status === 403) throw new Refused(403, body.message || "You may not do that here.");
      if (r.status === 409) throw new Refused(409, "The key server refused: a record failed its integrity check. Tell your information governance lead.");
      if (r.status === 429) throw new Refused(429, "Too many attempts. Wait a while and try again.");
      throw new Refused(r.status, body.message || `The key server answered ${r.status}.`);
    }
    return body;
  }

  function showPanel(id) {
    for (const p of PANELS) $(p).hidden = p !== id;
    for (const a of document.querySelectorAll(".console-nav a")) {
      const here = a.getAttribute("href") === `#/console${{ "c-overview": "", "c-users": "/users", "c-reports": "/reports", "c-report": "/reports", "c-audit": "/audit", "c-settings": "/settings" }[id]}`;
      if (here) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  async function whoAmI() {
    if (me) return me;
    const s = await call("/v1/sessions/current");
    me = { email: s.email, org: s.org, role: s.role };
    return me;
  }

  // ---- overview -----------------------------------------------------------

  function chart(days) {
    const NS = "http://www.w3.org/2000/svg";
    const series = [["sealed", "#005eb8"], ["opened", "#007f3b"], ["revoked", "#d5281b"]];
    const top = Math.max(1, ...days.flatMap((d) => series.map(([k]) => d[k])));
    const band = 30;
    const h = 120;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${days.length * band} ${h + 16}`);
    svg.setAttribute("role", "img");
    const total = (k) => days.reduce((n, d) => n + d[k], 0);
    svg.setAttribute("aria-label", `Over ${days.length} days: ${total("sealed")} sealed, ${total("opened")} opened, ${total("revoked")} revoked`);
    days.forEach((d, i) => {
      series.forEach(([k, colour], j) => {
        const bh = Math.round((d[k] / top) * h);
        const r = document.createElementNS(NS, "rect");
        r.setAttribute("x", i * band + 3 + j * 8);
        r.setAttribute("y", h - bh);
        r.setAttribute("width", 7);
        r.setAttribute("height", Math.max(bh, d[k] ? 1 : 0));
        r.setAttribute("fill", colour);
        const t = document.createElementNS(NS, "title");
        t.textContent = `${d.date}: ${d[k]} ${k}`;
        r.append(t);
        svg.append(r);
      });
      if (i % 2 === 0 || days.length <= 7) {
        const label = document.createElementNS(NS, "text");
        label.setAttribute("x", i * band + 2);
        label.setAttribute("y", h + 13);
        label.setAttribute("font-size", "10");
        label.setAttribute("fill", "#4c6272");
        label.textContent = d.date.slice(5);
        svg.append(label);
      }
    });
    const legend = el("p", null, { class: "legend" });
    for (const [k] of series) {
      legend.append(el("span", null, { class: `swatch swatch-${k}` }), ` ${k} `);
    }
    $("c-chart").replaceChildren(svg, legend);
  }

  async function overview() {
    showPanel("c-overview");
    const o = await call("/v1/overview?days=14");
    const facts = $("c-overview-facts");
    facts.replaceChildren();
    fact(facts, "Users", o.users);
    fact(facts, "Locked accounts", o.locked_accounts);
    fact(facts, "Disabled accounts", o.disabled_accounts);
    fact(facts, "Refused sign-ins (14 days)", o.failed_sign_ins);
    chart(o.days);
    fill("c-days", o.days.slice().reverse().map((d) => row([d.date, d.sealed, d.opened, d.revoked])));
  }

  // ---- users --------------------------------------------------------------

  // Choosing a role changes nothing until "Change role" (a role change
  // ends the user's sessions, so it is never a side effect of scrolling
  // through a list with the keyboard).
  function roleControl(u) {
    if (me.role !== "admin" || u.email === me.email || u.role === "guest") return document.createTextNode(u.role);
    const box = el("div", null, { class: "row-actions" });
    const s = el("select", null, { "aria-label": `Role of ${u.email}` });
    for (const r of ["clinician", "auditor", "admin", "service"]) {
      const o = el("option", r, { value: r });
      if (r === u.role) o.selected = true;
      s.append(o);
    }
    const apply = el("button", "Change role", { type: "button", class: "button secondary small" });
    apply.hidden = true;
    s.addEventListener("change", () => { apply.hidden = s.value === u.role; });
    apply.addEventListener("click", () => act(() => call(`/v1/users/${u.id}`, { method: "PATCH", json: { role: s.value } }), `${u.email} is now ${s.value === "admin" || s.value === "auditor" ? "an" : "a"} ${s.value}; their sessions have ended.`));
    box.append(s, apply);
    return box;
  }

  function userActions(u) {
    const cell = el("div", null, { class: "row-actions" });
    if (me.role !== "admin" || u.email === me.email) return cell;
    const button = (label, path, done) => {
      const b = el("button", label, { type: "button", class: "button secondary small" });
      b.addEventListener("click", () => act(() => call(`/v1/users/${u.id}/${path}`, { method: "POST" }), done));
      cell.append(b);
    };
    if (u.status === "enabled") button("Disable", "disable", `${u.email} is disabled. Their sessions have ended.`);
    else button("Enable", "enable", `${u.email} may sign in again.`);
    if (u.sessions > 0) button("End sessions", "sessions/revoke", `Every session of ${u.email} has ended.`);
    return cell;
  }

  async function users() {
    showPanel("c-users");
    const q = $("c-user-q").value.trim();
    const list = await call(`/v1/users${q ? `?q=${encodeURIComponent(q)}` : ""}`);
    fill(
      "c-user-table",
      list.users.map((u) => {
        const status = u.intact ? u.status : `${u.status} (changed outside the key server)`;
        return row([u.email, roleControl(u), status, when(u.last_sign_in), u.devices, userActions(u)]);
      }),
    );
    if (!list.users.length) $("c-user-table").tBodies[0].append(row(["No users match."]));
  }

  // Runs a change, then says what happened and shows the screen again.
  async function act(change, done) {
    clearProblem();
    try {
      await change();
      say(done);
      await render(location.hash);
    } catch (err) {
      problem(err.message);
    }
  }

  $("c-user-search").addEventListener("submit", (e) => {
    e.preventDefault();
    clearProblem();
    users().catch((err) => problem(err.message));
  });

  $("c-add-user").addEventListener("submit", (e) => {
    e.preventDefault();
    const email = $("c-new-email").value.trim();
    const role = $("c-new-role").value;
    if (!email.includes("@")) {
      clearProblem();
      $("c-new-email").focus();
      return problem("Enter the new user's email address.");
    }
    act(async () => {
      const made = await call("/v1/users", { method: "POST", json: { email, role } });
      $("c-new-email").value = "";
      return made;
    }, `${email} was added as ${role === "admin" || role === "auditor" ? "an" : "a"} ${role}. They sign in with a code e-mailed to that address, or with single sign-on where the organisation has it.`);
  });

  // ---- reports ------------------------------------------------------------

  function reportRow(k) {
    const link = el("a", k.report_id, { href: `#/console/reports/${k.key_id}` });
    const status = k.intact ? k.status : `${k.status} (changed outside the key server)`;
    return row([link, k.creator, k.recipients.join(", "), when(k.created_at), when(k.expires_at), k.fetches, status]);
  }

  function reportsQuery(offset) {
    const p = new URLSearchParams({ limit: PAGE, offset });
    const id = $("c-report-id").value.trim();
    const by = $("c-report-creator").value.trim();
    if (id) p.set("report_id", id);
    if (by) p.set("creator", by);
    return `/v1/keys?${p}`;
  }

  async function reports(more = false) {
    showPanel("c-reports");
    if (!more) reportsOffset = 0;
    const page = await call(reportsQuery(reportsOffset));
    const body = $("c-report-table").tBodies[0];
    const rows = page.keys.map(reportRow);
    if (more) fill("c-report-table", [...body.rows, ...rows]);
    else fill("c-report-table", rows);
    if (!more && !page.keys.length) body.append(row(["No reports match."]));
    reportsOffset = page.next_offset || 0;
    $("c-reports-more").hidden = !page.next_offset;
  }

  $("c-report-search").addEventListener("submit", (e) => {
    e.preventDefault();
    clearProblem();
    reports().catch((err) => problem(err.message));
  });
  $("c-reports-more").addEventListener("click", () => reports(true).catch((err) => problem(err.message)));

  let shownKey = null;

  async function report(keyId) {
    showPanel("c-report");
    shownKey = null;
    $("c-revoke-confirm")?.remove();
    const found = await call(`/v1/keys?key_id=${encodeURIComponent(keyId)}&limit=1`);
    const k = found.keys[0];
    if (!k) throw new Refused(404, "There is no such report key in this organisation.");
    shownKey = k;
    $("c-report-title").textContent = `Report ${k.report_id}`;
    const facts = $("c-report-facts");
    facts.replaceChildren();
    fact(facts, "Report id", k.report_id);
    fact(facts, "Key id", k.key_id);
    fact(facts, "Sealed by", k.creator);
    fact(facts, "Recipients", k.recipients.join(", "));
    fact(facts, "Created", when(k.created_at));
    fact(facts, "Expires", when(k.expires_at));
    fact(facts, "Status", k.intact ? k.status : `${k.status}: changed outside the key server, never released`);
    if (k.revoked_at) fact(facts, "Revoked", when(k.revoked_at));
    fact(facts, "Opened", `${k.fetches} time${k.fetches === 1 ? "" : "s"}`);
    // A revoked key changes no more; an expired one may be revoked or given
    // more time, but takes no new recipients.
    $("c-revoke").hidden = k.status === "revoked";
    $("c-expiry").hidden = k.status === "revoked";
    $("c-add-recipient").hidden = k.status !== "live";
    $("c-expires").value = k.expires_at ? k.expires_at.slice(0, 10) : "";
    const trail = await call(`/v1/audit?key_id=${encodeURIComponent(k.key_id)}`);
    fill("c-history", trail.events.map((e) => row([when(e.at), e.actor, e.action, e.outcome, e.detail])));
    const opened = trail.events.filter((e) => (e.action === "key.fetched" || e.action === "drop.downloaded") && e.outcome === "success");
    $("c-openers").replaceChildren(
      ...opened.map((e) => el("li", `${e.actor}, ${when(e.at)}${e.action === "drop.downloaded" ? " (downloaded the share link)" : ""}${e.device_id ? `, device ${e.device_id}` : ""}`)),
    );
    if (!opened.length) $("c-openers").append(el("li", "Nobody has opened it."));
    const search = el("a", "Search the log for this report", { href: `#/console/audit?report_id=${encodeURIComponent(k.report_id)}` });
    const item = el("li");
    item.append(search);
    $("c-openers").append(item);
  }

  // Revoking asks once more: it cannot be undone.
  $("c-revoke").addEventListener("click", () => {
    if (!shownKey || $("c-revoke-confirm")) return;
    const box = el("div", null, { id: "c-revoke-confirm", class: "warning", role: "group", "aria-labelledby": "c-revoke-warning" });
    box.append(el("p", `Revoking cannot be undone. Nobody, ${shownKey.creator} included, will be able to open report ${shownKey.report_id} again.`, { id: "c-revoke-warning" }));
    const yes = el("button", "Yes, revoke it", { type: "button", class: "button danger" });
    const no = el("button", "Cancel", { type: "button", class: "button secondary" });
    const key = shownKey.key_id;
    yes.addEventListener("click", () => act(() => call(`/v1/keys/${key}/revoke`, { method: "POST" }), `The key of report ${shownKey.report_id} is revoked. Nobody can open it any more.`));
    no.addEventListener("click", () => box.remove());
    box.append(yes, no);
    $("c-revoke").after(box);
    yes.focus();
  });

  $("c-add-recipient").addEventListener("submit", (e) => {
    e.preventDefault();
    const who = $("c-recipient").value.trim();
    if (!who.includes("@")) {
      clearProblem();
      return problem("Enter the recipient's email address.");
    }
    const key = shownKey.key_id;
    act(async () => {
      await call(`/v1/keys/${key}/recipients`, { method: "POST", json: { recipients: [who] } });
      $("c-recipient").value = "";
    }, `${who} may now open this report.`);
  });

  $("c-expiry").addEventListener("submit", (e) => {
    e.preventDefault();
    const day = $("c-expires").value;
    const key = shownKey.key_id;
    const expires = day ? `${day}T23:59:59Z` : null;
    act(() => call(`/v1/keys/${key}`, { method: "PATCH", json: { expires_at: expires } }), day ? `The key now expires at the end of ${day} (UTC).` : "The key no longer expires.");
  });

  // ---- audit --------------------------------------------------------------

  async function integrity(fresh) {
    const box = $("c-integrity");
    box.textContent = "Checking the log…";
    const s = await call(`/v1/audit/status${fresh ? "?fresh=true" : ""}`);
    box.className = `integrity ${s.status}`;
    const cp = s.checkpoint ? ` The latest signed checkpoint covers ${s.checkpoint.size} events (${when(s.checkpoint.at)}).` : "";
    box.textContent = s.status === "intact"
      ? `The log is intact: all ${s.events} events verified (hash chain, Merkle tree, checkpoints and the state they describe).${cp} Checked ${when(s.checked_at)}.`
      : `The log is broken ${s.problem}. Verified up to event ${s.verified_up_to} of ${s.events}. Checked ${when(s.checked_at)}. Tell your information governance lead.`;
  }

  $("c-check").addEventListener("click", () => integrity(true).catch((err) => problem(err.message)));

  const AUDIT_FIELDS = [["c-a-report", "report_id"], ["c-a-key", "key_id"], ["c-a-actor", "actor"], ["c-a-action", "action"], ["c-a-outcome", "outcome"], ["c-a-since", "since"], ["c-a-until", "until"]];

  function auditQuery() {
    const p = new URLSearchParams({ order: "newest", limit: PAGE });
    for (const [id, name] of AUDIT_FIELDS) {
      let v = $(id).value.trim();
      if (!v) continue;
      if (name === "since") v = `${v}T00:00:00Z`;
      if (name === "until") {
        const d = new Date(`${v}T00:00:00Z`);
        d.setUTCDate(d.getUTCDate() + 1);
        v = d.toISOString().replace(".000Z", "Z");
      }
      p.set(name, v);
    }
    return p;
  }

  // A page of the search on screen (`paging`: the one shown, not what the
  // form now says), or of the form's search.
  async function auditPage(before, paging = false) {
    const q = paging && auditShown ? new URLSearchParams(auditShown) : auditQuery();
    if (before) q.set("before", before);
    else q.delete("before");
    const page = await call(`/v1/audit?${q}`);
    auditShown = q;
    fill("c-audit-table", page.events.map((e) => row([e.seq, when(e.at), e.actor, e.action, e.report_id, e.outcome, e.client_ip, e.detail])));
    const first = page.events.length ? page.events[0].seq : null;
    const last = page.events.length ? page.events[page.events.length - 1].seq : null;
    $("c-audit-count").textContent = page.events.length
      ? `Showing ${page.events.length} event${page.events.length === 1 ? "" : "s"}, numbers ${last} to ${first}${page.next_before ? "; older events follow" : ""}.`
      : "No events match.";
    $("c-audit-older").hidden = !page.next_before;
    $("c-audit-older").dataset.before = page.next_before || "";
    $("c-audit-newer").hidden = auditPages.length === 0;
  }

  async function audit(params) {
    showPanel("c-audit");
    if (params) {
      for (const [id, name] of AUDIT_FIELDS) $(id).value = params.get(name) || "";
    }
    auditPages = [];
    await Promise.all([integrity(false), auditPage(null)]);
  }

  $("c-audit-search").addEventListener("submit", (e) => {
    e.preventDefault();
    clearProblem();
    auditPages = [];
    auditPage(null).catch((err) => problem(err.message));
  });
  $("c-audit-older").addEventListener("click", () => {
    auditPages.push(auditShown.get("before"));
    auditPage($("c-audit-older").dataset.before, true).catch((err) => problem(err.message));
  });
  $("c-audit-newer").addEventListener("click", () => {
    const before = auditPages.pop();
    auditPage(before, true).catch((err) => problem(err.message));
  });

  // Exactly the events on screen: the same query, page and all.
  $("c-export").addEventListener("submit", async (e) => {
    e.preventDefault();
    clearProblem();
    if (!auditShown) return problem("Search first; the events shown are what is exported.");
    const format = $("c-export-format").value;
    const q = new URLSearchParams(auditShown);
    q.set("format", format);
    try {
      const r = await call(`/v1/audit?${q}`, { raw: true });
      const blob = await r.blob();
      const a = el("a", null, { download: `medseal-audit-${new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-")}.${format}` });
      a.href = URL.createObjectURL(blob);
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      say(`Exported the ${$("c-audit-table").tBodies[0].rows.length} events shown as ${format.toUpperCase()}.`);
    } catch (err) {
      problem(err.message);
    }
  });

  // ---- settings -----------------------------------------------------------

  async function settings() {
    showPanel("c-settings");
    const p = await call("/v1/org/policy");
    $("c-domains").value = p.allowed_recipient_domains.join("\n");
    $("c-domains").readOnly = me.role !== "admin";
    const facts = $("c-settings-facts");
    facts.replaceChildren();
    fact(facts, "Guests (people without an account)", p.guests === "none" ? "not admitted" : p.guests === "any" ? "any address" : p.guests);
    fact(facts, "Share links live at most", `${p.drop_max_days} days`);
    fact(facts, "Changed with", "medseal keyserver org set (guests, share links, single sign-on)");
  }

  $("c-policy").addEventListener("submit", (e) => {
    e.preventDefault();
    const domains = $("c-domains").value.split(/[\s,]+/).map((d) => d.trim()).filter(Boolean);
    act(() => call("/v1/org/policy", { method: "PUT", json: { allowed_recipient_domains: domains } }), domains.length ? `Reports may now be sealed only for ${domains.join(", ")}.` : "Reports may be sealed for any address.");
  });

  // ---- routing ------------------------------------------------------------

  async function render(hash) {
    const [path, query] = hash.slice("#/console".length).split("?");
    const m = /^\/reports\/(k_[0-9a-f]{32})$/.exec(path);
    if (path === "" || path === "/") return overview();
    if (path === "/users") return users();
    if (path === "/reports") return reports();
    if (m) return report(m[1]);
    if (path === "/audit") return audit(query ? new URLSearchParams(query) : null);
    if (path === "/settings") return settings();
    throw new Refused(404, "There is no such page in the console.");
  }

  return {
    /// Shows the console screen for `hash`; false if the signed-in
    /// account may not use the console.
    async show(hash) {
      $("console").hidden = false;
      try {
        const who = await whoAmI();
        if (who.role !== "admin" && who.role !== "auditor") {
          $("console").hidden = true;
          problem(`The organisation console is for admins and auditors. You are signed in as a ${who.role}.`);
          return false;
        }
        document.body.classList.toggle("is-admin", who.role === "admin");
        $("console-org").textContent = `${who.org}: signed in as ${who.email} (${who.role})`;
        await render(hash);
        return true;
      } catch (err) {
        problem(err.message);
        return false;
      }
    },
    hide() {
      $("console").hidden = true;
    },
    forget() {
      me = null;
      auditShown = null;
      $("console").hidden = true;
      for (const t of ["c-user-table", "c-report-table", "c-history", "c-audit-table", "c-days"]) $(t).tBodies[0].replaceChildren();
    },
  };
}
