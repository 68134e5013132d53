#!/usr/bin/env python3
"""A scripted RESP server for test_rpc_resp.sh: what bench_rpc --resp reads, cut anywhere.

    resp_server.py SOCKET KEY[,KEY...] MODE

Listens on the Unix socket SOCKET; prints "listening" once ready. Every request must be
`GET KEY` in RESP, with several KEYs each the next of the list after the connection's request
before (anything else: the connection is closed and the server exits 3). The answers
of a connection are one stream of bytes, written in chunks of 1, 2, 3, 5, 8, 13, ... bytes
(cycling, up to 64 KiB), so that an answer is split between reads at every place and the
answers of pipelined requests come several to a read. MODE says what the k-th answer is (k
from 0, per connection):

    value N      a bulk string of N bytes ($N\\r\\n...\\r\\n)
    nil N        as value, but every other answer (k odd) is a nil ($-1\\r\\n)
    err N        as value, but every other answer (k odd) is -ERR wrong
    trailer      $3\\r\\nfooXY: a bulk string not followed by CRLF
    noline       1.5 MiB of '-' without a line's end
    toobig       a bulk string of 600,000 bytes

The socket, the chunks and the threads: scripted_stream.py.
"""
import sys

from scripted_stream import serve_forever

path, keys, mode = sys.argv[1], sys.argv[2].encode().split(b","), sys.argv[3].split()
reqs = [b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key) for key in keys]


def answer(k):
    kind = mode[0]
    if kind == "trailer":
        return b"$3\r\nfooXY"
    if kind == "noline":
        return b"-" * (3 << 19)
    if kind == "toobig":
        return b"$600000\r\n" + b"v" * 600000 + b"\r\n"
    n = int(mode[1])
    if kind == "nil" and k % 2:
        return b"$-1\r\n"
    if kind == "err" and k % 2:
        return b"-ERR wrong\r\n"
    return b"$%d\r\n%s\r\n" % (n, bytes((48 + i % 10 for i in range(n))))


serve_forever(path, reqs, answer, "resp_server")
