#!/usr/bin/env python3
"""A webhook receiver for examples/hooks/webhook.yml: the hooks of hooks.py, over HTTP.

    HOOKS_SIGNING_SECRET=s3cret python3 examples/hooks/receiver.py 8080

Each POST carries one event as JSON; the reply body is the overrides (204 for none). With
HOOKS_SIGNING_SECRET set, requests must carry a valid signature: the HMAC-SHA256 of
"<timestamp>.<body>" keyed with the secret, as `x-flatmachines-signature: sha256=<hex>`, with
the timestamp in `x-flatmachines-timestamp` no more than five minutes from now.
"""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hooks import OrderHooks

SECRET = os.environ.get("HOOKS_SIGNING_SECRET", "").encode()
TOLERANCE_SECONDS = 300
HOOKS = OrderHooks()


def signature_ok(headers, body):
    timestamp = headers.get("x-flatmachines-timestamp", "")
    signature = headers.get("x-flatmachines-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, "sha256=" + expected)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if SECRET and not signature_ok(self.headers, body):
            self.send_error(401, "bad signature")
            return
        event = json.loads(body)
        handler = getattr(HOOKS, "on_" + event["event"], None)
        try:
            reply = handler(event) if handler else None
        except Exception as exc:
            reply = {"hook_error": f"{type(exc).__name__}: {exc}"}
        if not reply:
            self.send_response(204)
            self.end_headers()
            return
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    # Port 0 picks a free port; the line below says which.
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"receiver.py: listening on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()
