#!/usr/bin/env python3
"""A scripted tallyd for test_rpc_mp.sh: what bench_rpc reads from tallyd, cut anywhere.

    mp_server.py SOCKET SKU MODE

Listens on the Unix socket SOCKET; prints "listening" once ready. Every request must be
bench_rpc's stock.get of SKU, [0, 1, "stock.get", [{"sku": SKU}]] (anything else: the
server exits 3). The answers of a connection are one stream of bytes, written in chunks of 1,
2, 3, 5, 8, 13, ... bytes (cycling, up to 64 KiB), so that an answer is split between reads at
every place and the answers of pipelined requests come several to a read. MODE says what the
k-th answer is (k from 0, per connection):

    value N      [1, 1, nil, a string of N bytes]; every other answer (k odd) packs the type
                 as an int8 and the msgid as a uint32 (valid, as msgpack-c never packs them)
    err N        as value, but every other answer (k odd) is [1, 1, {code, message}, nil]
    wide N       as value, with the outer array as an array 16 (k odd) or 32 (k even) of 4
    short N      as value, but every other answer (k odd) is an array of 3 (an error)
    malformed    the reserved byte 0xc1
    toobig       an answer of some 600,000 bytes

The socket, the chunks and the threads: scripted_stream.py.
"""
import struct
import sys

from scripted_stream import serve_forever

path, sku, mode = sys.argv[1], sys.argv[2].encode(), sys.argv[3].split()


def mstr(b):
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


req = b"\x94\x00\x01" + mstr(b"stock.get") + b"\x91\x81" + mstr(b"sku") + mstr(sku)


def answer(k):
    kind = mode[0]
    if kind == "malformed":
        return b"\xc1"
    if kind == "toobig":
        return b"\x94\x01\x01\xc0" + mstr(b"v" * 600000)
    n = int(mode[1])
    value = mstr(bytes((48 + i % 10 for i in range(n))))
    if kind == "value" and k % 2:
        return b"\x94\xd0\x01\xce\x00\x00\x00\x01\xc0" + value
    if kind == "err" and k % 2:
        return b"\x94\x01\x01\x82" + mstr(b"code") + mstr(b"not_found") + mstr(
            b"message") + mstr(b"no such SKU") + b"\xc0"
    if kind == "wide":
        head = b"\xdc\x00\x04" if k % 2 else b"\xdd\x00\x00\x00\x04"
        return head + b"\x01\x01\xc0" + value
    if kind == "short" and k % 2:
        return b"\x93\x01\x01\xc0"
    return b"\x94\x01\x01\xc0" + value


serve_forever(path, [req], answer, "mp_server")
