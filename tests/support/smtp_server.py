"""A real SMTP server for the e-mail tests: aiosmtpd on loopback with
STARTTLS (required) or implicit TLS, and AUTH required.

Each accepted message is written as N.eml, and parsed with Python's own
e-mail parser (independent of the Rust code under test) into N.json:
envelope, whether TLS and AUTH were in force, subject, text and HTML bodies,
and the attachments, saved as N-K.bin. Runs until stdin closes.
"""
import argparse
import json
import os
import ssl
import sys
import warnings
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--mode", choices=["starttls", "implicit"], required=True)
p.add_argument("--user", required=True)
p.add_argument("--password-file", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
password = open(a.password_file, "rb").read().strip()


class Handler:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        n = self.n
        raw = envelope.original_content or envelope.content
        with open(os.path.join(a.out, f"{n}.eml"), "wb") as f:
            f.write(raw)
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        attachments = []
        for k, part in enumerate(msg.iter_attachments()):
            path = os.path.join(a.out, f"{n}-{k}.bin")
            with open(path, "wb") as f:
                f.write(part.get_payload(decode=True))
            attachments.append({"filename": part.get_filename(), "content_type": part.get_content_type(), "path": path})
        doc = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "subject": msg["subject"],
            "message_id": msg["message-id"],
            "from": msg["from"],
            "to": msg["to"],
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "attachments": attachments,
        }
        tmp = os.path.join(a.out, f".{n}.json")
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, os.path.join(a.out, f"{n}.json"))
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == a.user.encode() and auth_data.password == password
    return AuthResult(success=ok, handled=False)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(a.cert, a.key)
common = dict(hostname="127.0.0.1", port=a.port, authenticator=authenticator, auth_required=True)
if a.mode == "starttls":
    controller = Controller(Handler(), tls_context=ctx, require_starttls=True, auth_require_tls=True, **common)
else:
    # The whole connection is TLS from the first byte; aiosmtpd's
    # auth_require_tls only recognises STARTTLS, so it is off here.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    controller = Controller(Handler(), ssl_context=ctx, auth_require_tls=False, **common)
controller.start()
print("READY", flush=True)
sys.stdin.read()
controller.stop()
