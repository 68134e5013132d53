"""What resp_server.py and mp_server.py share: a Unix socket server whose answers are one
stream of bytes per connection, cut anywhere.

serve_forever(path, reqs, answer, name) listens on the Unix socket `path`, prints "listening"
once ready, and runs a thread per connection. `reqs` is a list of requests: a connection's
first request must be one of them, and each later one the next in the list after the one
before, round (bench_rpc --keys-file: each connection from its own place in the list); with one,
every request is that one. Anything else: the server exits 3, saying so as `name`. The k-th
request of a connection (k from 0) is answered with answer(k). A connection's answers are written in chunks of 1, 2, 3, 5, 8, 13, ...
bytes (cycling, up to 64 KiB), so that an answer is split between reads at every place and the
answers of pipelined requests come several to a read. Python 3 standard library only; stops on
SIGTERM.
"""
import os
import socket
import sys
import threading

SIZES = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 377, 1000, 65536]


def _refuse(name, got):
    sys.stderr.write("%s: not the request expected: %r\n" % (name, got[:64]))
    os._exit(3)


def _serve(conn, reqs, answer, name):
    si, k, got, at = 0, 0, b"", None
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            got += data
            out = b""
            while got:
                if at is None:
                    # the first request: whichever of reqs it is
                    whole = [i for i, r in enumerate(reqs) if got.startswith(r)]
                    if whole:
                        at = whole[0]
                    elif not any(r.startswith(got) for r in reqs):
                        _refuse(name, got)
                    else:
                        break
                req = reqs[at]
                if len(got) < len(req):
                    if not req.startswith(got):
                        _refuse(name, got)
                    break
                if got[: len(req)] != req:
                    _refuse(name, got)
                got = got[len(req) :]
                out += answer(k)
                k += 1
                at = (at + 1) % len(reqs)
            while out:
                n = SIZES[si % len(SIZES)]
                si += 1
                conn.sendall(out[:n])
                out = out[n:]
    except OSError:
        return
    finally:
        conn.close()


def serve_forever(path, req, answer, name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=_serve, args=(c, req, answer, name), daemon=True).start()
