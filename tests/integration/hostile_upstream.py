#!/usr/bin/env python3
"""A hostile tally Warehouse API v1 on 127.0.0.1 for test_hostile.sh.

Serves one warehouse's inventory (GET /v1/inventory), an empty outbound feed and movement
results, honestly in mode "sane"; GET /control/mode?m=MODE switches how /v1/inventory misbehaves:
  endless   200, chunked, a body that never ends (spaces after '{"items":[')
  trickle   200, the honest body at 1 byte a second
  redirect  302 to another host (a client must not follow it)
  ctype     200, Content-Type text/html, an HTML page
  badutf8   200, JSON whose first row's sku is invalid UTF-8 (the other row is honest)
  bignum    200, JSON whose first row's on_hand and version are beyond 2^63
  redirect_same  302 to another path on this same host (/moved/v1/inventory, which serves the
            honest page: a client that followed it would get data)
  sane      honest again
Prints "listening on 127.0.0.1:PORT" once it accepts connections. /control/hits counts inventory
requests per mode (and "moved": requests that followed redirect_same).

  hostile_upstream.py [--tls CERT KEY]
With --tls it speaks HTTPS with that certificate chain and key (test_tls.sh); the control
routes are then HTTPS too.
"""
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

state = {"mode": "sane", "version": 1, "hits": {}}
lock = threading.Lock()


def honest_page():
    v = state["version"]
    rows = [
        {"sku": "HOST-1", "on_hand": 5 + v, "inbound": 0, "version": v,
         "updated_at": "2026-01-01T00:00:00Z"},
        {"sku": "HOST-2", "on_hand": 7 + v, "inbound": 1, "version": v,
         "updated_at": "2026-01-01T00:00:00Z"},
    ]
    return json.dumps({"items": rows, "next_cursor": None, "version": v}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/control/mode":
            with lock:
                state["mode"] = q.get("m", ["sane"])[0]
                state["version"] += 1  # what the next honest page says is new
            return self.send(200, b"{}")
        if u.path == "/control/hits":
            with lock:
                return self.send(200, json.dumps(state["hits"]).encode())
        if u.path.startswith("/moved/"):
            with lock:
                state["hits"]["moved"] = state["hits"].get("moved", 0) + 1
            return self.send(200, honest_page())
        if u.path.endswith("/v1/outbound-orders"):
            return self.send(200, b'{"items":[],"next_cursor":null,"version":0}')
        if not u.path.endswith("/v1/inventory"):
            return self.send(404, b'{"error":{"code":"not_found","message":"no such route"}}')
        with lock:
            mode = state["mode"]
            state["hits"][mode] = state["hits"].get(mode, 0) + 1
        try:
            self.inventory(mode)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def inventory(self, mode):
        if mode == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"b\r\n{\"items\":[\r\n")
            chunk = b" " * 65536
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if mode == "trickle":
            body = honest_page()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for b in body:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(1)
            return
        if mode == "redirect":
            return self.send(302, b"", extra=[("Location", "http://other-host.invalid/v1/inventory")])
        if mode == "redirect_same":
            return self.send(302, b"", extra=[("Location", "/moved/v1/inventory")])
        if mode == "ctype":
            return self.send(200, b"<html><body>Sign in to the portal</body></html>", "text/html")
        if mode == "badutf8":
            page = honest_page().replace(b'"HOST-1"', b'"HOST-\xff\xfe"')
            return self.send(200, page)
        if mode == "bignum":
            page = json.loads(honest_page())
            page["items"][0]["on_hand"] = 99999999999999999999
            page["items"][0]["version"] = 18446744073709551616
            return self.send(200, json.dumps(page).encode())
        return self.send(200, honest_page())

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path.endswith("/v1/movements"):
            res = [{"id": m.get("id"), "status": "applied", "version": state["version"]}
                   for m in body.get("movements", [])]
            return self.send(200, json.dumps({"results": res, "version": state["version"]}).encode())
        return self.send(404, b'{"error":{"code":"not_found","message":"no such route"}}')


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        # The handshake runs in the handler's thread (not in accept): a client that refuses
        # the certificate costs that thread only.
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
