#!/usr/bin/env python3
"""A small HTTP service that knows nothing of leaklab, for loadgen's tests.

GET /k/{key} answers a short text and keeps 4 KiB for the key:
  --mode leak     in a dict that is never evicted (memory climbs with distinct keys)
  --mode bounded  in an LRU of --capacity keys (memory rises to a ceiling, then flat)
  --mode churn    nowhere (allocates and drops it)
GET /metrics (only with --metrics) answers Prometheus text: the process's
resident memory and the number of cached keys.
GET / answers an HTML page (a URL that is not an API, for loadgen's errors).

Prints `listening on http://127.0.0.1:PORT` on stdout once it accepts.
Run it with MALLOC_ARENA_MAX=1 (the tests do): it serves a thread per
connection, and with glibc's arena per thread a bounded store's RSS creeps
for minutes before it levels.

Binds loopback only; stops on SIGTERM or when stdin closes (so a test that
dies leaves no server behind).
"""

import argparse
import collections
import http.server
import os
import signal
import sys
import threading

ENTRY_BYTES = 4096


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Store:
    def __init__(self, mode, capacity):
        self.mode = mode
        self.capacity = capacity
        self.entries = collections.OrderedDict()
        self.lock = threading.Lock()

    def touch(self, key):
        value = bytearray(os.urandom(16)) * (ENTRY_BYTES // 16)
        if self.mode == "churn":
            return
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            if self.mode == "bounded":
                while len(self.entries) > self.capacity:
                    self.entries.popitem(last=False)

    def __len__(self):
        with self.lock:
            return len(self.entries)


def handler(store, metrics):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, content_type="text/plain; charset=utf-8"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/k/"):
                store.touch(self.path[3:])
                self.answer(200, "ok\n")
            elif self.path == "/metrics" and metrics:
                self.answer(
                    200,
                    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                    "# TYPE process_resident_memory_bytes gauge\n"
                    f"process_resident_memory_bytes {rss_bytes()}\n"
                    "# HELP app_cache_entries Keys the service keeps.\n"
                    "# TYPE app_cache_entries gauge\n"
                    f"app_cache_entries {len(store)}\n",
                    "text/plain; version=0.0.4",
                )
            elif self.path == "/":
                self.answer(200, "<!doctype html><title>keyed</title><p>hello</p>\n", "text/html")
            else:
                self.answer(404, "not found\n")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["leak", "bounded", "churn"], default="leak")
    p.add_argument("--capacity", type=int, default=2000)
    p.add_argument("--metrics", action="store_true")
    args = p.parse_args()
    store = Store(args.mode, args.capacity)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(store, args.metrics))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

    def watch_stdin():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
