"""A small FHIR R4 server for the delivery tests.

Every resource it is given is validated with the `fhir.resources` models
(R4B, whose DocumentReference, Patient and Bundle match R4), so a malformed
resource is refused as a real server would refuse it. It implements what
medseal's FHIR destination relies on, per the FHIR RESTful API:

- `POST /` with a transaction Bundle: entries processed in order, `urn:uuid:`
  fullUrls resolved, conditional references (`Patient?identifier=s|v`)
  resolved to exactly one match or the whole transaction fails (412),
  `ifNoneExist` honoured (an existing match is answered `200 OK`, nothing is
  created);
- `POST /Patient`, `GET /{type}/{id}`, and search `GET /{type}?identifier=`
  (and `?subject=` for DocumentReference) returning a searchset Bundle.

Runs until stdin closes; prints READY when listening.
"""
import argparse
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fhir.resources.R4B import get_fhir_model_class

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
a = p.parse_args()

lock = threading.Lock()
store = {}  # type -> id -> resource
counter = [0]


class Refused(Exception):
    def __init__(self, status, code, text):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def outcome(code, text):
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def empty_element(obj, path="$"):
    """The path of the first empty string, object or array, if any. FHIR
    (R4 §2.6.2 "JSON representation") forbids them: a value is present and
    non-empty, or the element is absent. The pydantic models accept some."""
    if isinstance(obj, str):
        return path if obj == "" else None
    if isinstance(obj, dict):
        if not obj:
            return path
        for k, v in obj.items():
            hit = empty_element(v, f"{path}.{k}")
            if hit:
                return hit
    if isinstance(obj, list):
        if not obj:
            return path
        for i, v in enumerate(obj):
            hit = empty_element(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


def validate(res):
    kind = res.get("resourceType")
    hit = empty_element(res)
    if hit:
        raise Refused(400, "invalid", f"{kind} is not valid: {hit} is empty")
    try:
        get_fhir_model_class(kind).model_validate(res)
    except Exception as e:  # noqa: BLE001 - any validation failure is a refusal
        raise Refused(400, "invalid", f"{kind} is not valid: {str(e).splitlines()[0]}")


def identifiers(res):
    ids = list(res.get("identifier", []))
    if "masterIdentifier" in res:
        ids.append(res["masterIdentifier"])
    return ids


def search(kind, query):
    params = urllib.parse.parse_qs(query)
    found = list(store.get(kind, {}).values())
    for tok in params.get("identifier", []):
        system, _, value = tok.partition("|")
        found = [r for r in found if any(i.get("system") == system and i.get("value") == value for i in identifiers(r))]
    for subj in params.get("subject", []):
        found = [r for r in found if r.get("subject", {}).get("reference") == subj]
    return found


def create(res):
    counter[0] += 1
    rid = str(counter[0])
    res = dict(res, id=rid, meta={"versionId": "1"})
    store.setdefault(res["resourceType"], {})[rid] = res
    return res


def resolve_refs(obj, mapping):
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k == "reference" and isinstance(v, str):
                if v in mapping:
                    obj[k] = mapping[v]
                elif "?" in v:
                    kind, _, query = v.partition("?")
                    hits = search(kind, query)
                    if len(hits) != 1:
                        raise Refused(412, "not-found", f"conditional reference {v} matched {len(hits)} resources")
                    obj[k] = f"{kind}/{hits[0]['id']}"
            else:
                resolve_refs(v, mapping)
    elif isinstance(obj, list):
        for v in obj:
            resolve_refs(v, mapping)


def transaction(bundle):
    validate(bundle)
    if bundle.get("type") != "transaction":
        raise Refused(400, "invalid", "only transaction bundles are accepted")
    entries = bundle.get("entry", [])
    for e in entries:
        validate(e["resource"])
    mapping, planned = {}, []
    # First pass: ifNoneExist matches and new ids (FHIR 3.1.0.11.2).
    for e in entries:
        req = e.get("request", {})
        kind = req.get("url")
        if req.get("method") != "POST" or kind != e["resource"]["resourceType"]:
            raise Refused(400, "not-supported", "only POST entries to the resource type are supported")
        existing = None
        if req.get("ifNoneExist"):
            hits = search(kind, req["ifNoneExist"])
            if len(hits) > 1:
                raise Refused(412, "duplicate", "ifNoneExist matched several resources")
            existing = hits[0] if hits else None
        planned.append((e, existing))
        if existing is not None and e.get("fullUrl"):
            mapping[e["fullUrl"]] = f"{kind}/{existing['id']}"
    answers = []
    for e, existing in planned:
        if existing is not None:
            answers.append({"response": {"status": "200 OK", "location": f"{existing['resourceType']}/{existing['id']}/_history/1"}})
            continue
        res = json.loads(json.dumps(e["resource"]))
        resolve_refs(res, mapping)
        made = create(res)
        if e.get("fullUrl"):
            mapping[e["fullUrl"]] = f"{made['resourceType']}/{made['id']}"
        answers.append({"response": {"status": "201 Created", "location": f"{made['resourceType']}/{made['id']}/_history/1"}})
    # References to entries created later in the same bundle.
    for e in store.values():
        for r in e.values():
            resolve_refs(r, mapping)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}


class H(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, doc, headers=()):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        if not self.headers.get("Content-Type", "").startswith("application/fhir+json"):
            return self.send(415, outcome("not-supported", "send application/fhir+json"))
        try:
            doc = json.loads(raw)
        except ValueError:
            return self.send(400, outcome("structure", "not JSON"))
        path = urllib.parse.urlparse(self.path).path.rstrip("/")
        try:
            with lock:
                if path == "":
                    snapshot = json.dumps(store)
                    try:
                        return self.send(200, transaction(doc))
                    except Refused:
                        # A transaction is all or nothing.
                        store.clear()
                        store.update(json.loads(snapshot))
                        raise
                kind = path.lstrip("/")
                if doc.get("resourceType") != kind:
                    raise Refused(400, "invalid", "resourceType does not match the URL")
                validate(doc)
                made = create(doc)
                return self.send(201, made, [("Location", f"{kind}/{made['id']}/_history/1")])
        except Refused as r:
            return self.send(r.status, outcome(r.code, r.text))

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        parts = [p for p in u.path.split("/") if p]
        with lock:
            if len(parts) == 2:
                res = store.get(parts[0], {}).get(parts[1])
                return self.send(200, res) if res else self.send(404, outcome("not-found", "no such resource"))
            if len(parts) == 1:
                hits = search(parts[0], u.query)
                return self.send(200, {"resourceType": "Bundle", "type": "searchset", "total": len(hits), "entry": [{"resource": r} for r in hits]})
        return self.send(404, outcome("not-found", "unknown path"))


server = ThreadingHTTPServer(("127.0.0.1", a.port), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("READY", flush=True)
sys.stdin.read()
server.shutdown()
