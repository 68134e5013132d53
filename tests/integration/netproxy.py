#!/usr/bin/env python3
"""A small TCP proxy for test_netfault.sh: tallyd -> this proxy -> tally-sim.

    netproxy.py LISTEN_ADDR:PORT UPSTREAM_ADDR:PORT MODE_FILE

Prints "netproxy listening on ADDR:PORT" once ready. The mode is the first line of MODE_FILE,
read again whenever the file changes (checked every 50 ms), so a test switches it while tallyd
runs; a missing or empty file means "pass":

    pass            bytes go through as they come
    latency MS      every chunk, each way, is delivered MS ms after it arrived (order kept)
    reorder MS      each new connection waits a random 0..MS ms before it is connected to the
                    upstream (its request held meanwhile), and each chunk towards the upstream
                    a random 0..MS ms (never overtaking an earlier chunk of its connection), so
                    requests sent later on other connections overtake earlier ones; answers
                    pass as they come
    blackhole       the peer accepts and never answers: new connections are accepted and their
                    bytes read and dropped; connections already open stop passing anything,
                    both ways (an answer on its way is lost); nothing is closed until the client
                    closes

Counters go to stderr at exit (SIGTERM): connections accepted, blackholed, bytes each way.
Python 3 standard library only; one thread per direction of each connection.
"""
import os
import random
import signal
import socket
import sys
import threading
import time

lock = threading.Lock()
mode = ("pass", 0)
stats = {"accepted": 0, "blackholed": 0, "up_bytes": 0, "down_bytes": 0}


def parse_mode(text):
    words = text.split()
    if not words or words[0] == "pass":
        return ("pass", 0)
    if words[0] in ("latency", "reorder") and len(words) == 2 and words[1].isdigit():
        return (words[0], int(words[1]))
    if words[0] == "blackhole":
        return ("blackhole", 0)
    print(f"netproxy: unknown mode {text.strip()!r}, keeping {mode}", file=sys.stderr)
    return None


def watch(path):
    global mode
    last = None
    while True:
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        if key != last:
            last = key
            text = ""
            if key is not None:
                try:
                    with open(path) as f:
                        text = f.readline()
                except OSError:
                    pass
            m = parse_mode(text)
            if m is not None:
                with lock:
                    mode = m
        time.sleep(0.05)


def current():
    with lock:
        return mode


def count(key, n):
    with lock:
        stats[key] += n


def pump(src, dst, key, dead):
    """Copies src to dst until EOF or an error, by the mode of each chunk's arrival."""
    queue = []  # (due, bytes) for latency
    cv = threading.Condition()
    done = [False]

    def sender():
        while True:
            with cv:
                while not queue and not done[0]:
                    cv.wait()
                if not queue and done[0]:
                    break
                due, data = queue[0]
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with cv:
                queue.pop(0)
            if dead.is_set():
                continue
            try:
                dst.sendall(data)
                count(key, len(data))
            except OSError:
                dead.set()
        if not dead.is_set():
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    last_due = 0.0
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        m, arg = current()
        if m == "blackhole":
            dead.set()  # this connection passes nothing from now on
        if dead.is_set():
            continue
        due = time.monotonic()
        if m == "latency":
            due += arg / 1000.0
        elif m == "reorder" and key == "up_bytes":
            due = max(due + random.uniform(0, arg / 1000.0), last_due)
        last_due = due
        with cv:
            queue.append((due, data))
            cv.notify()
    with cv:
        done[0] = True
        cv.notify()
    t.join()


def serve(client, upstream):
    m, arg = current()
    dead = threading.Event()
    if m == "blackhole":
        count("blackholed", 1)
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass
        client.close()
        return
    if m == "reorder":
        time.sleep(random.uniform(0, arg / 1000.0))
    try:
        up = socket.create_connection(upstream, timeout=10)
        up.settimeout(None)
    except OSError:
        client.close()
        return
    t = threading.Thread(target=pump, args=(up, client, "down_bytes", dead), daemon=True)
    t.start()
    pump(client, up, "up_bytes", dead)
    if dead.is_set():
        # Blackholed while open: hold the client's side until it gives up.
        try:
            up.close()
        except OSError:
            pass
        t.join(timeout=0)
        return
    t.join()
    client.close()
    up.close()


def addr(s):
    host, port = s.rsplit(":", 1)
    return (host, int(port))


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    listen, upstream, path = addr(sys.argv[1]), addr(sys.argv[2]), sys.argv[3]

    def bye(*_):
        with lock:
            print("netproxy: " + " ".join(f"{k}={v}" for k, v in stats.items()), file=sys.stderr)
        os._exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    threading.Thread(target=watch, args=(path,), daemon=True).start()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(256)
    print(f"netproxy listening on {listen[0]}:{srv.getsockname()[1]}", flush=True)
    while True:
        c, _ = srv.accept()
        count("accepted", 1)
        threading.Thread(target=serve, args=(c, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
