#!/usr/bin/env python3
"""Responsiveness under a burst of long orders (scripts/responsiveness.sh runs it).

Sends BURST car orders at search_radius=10 at once, then EXTRA more once the burst is in, and
meanwhile probes `GET /` every 50 ms on a new connection each time, as a health check does.
Prints the median and max `/` latency and what the extra orders got, and how fast.
"""
import http.client
import statistics
import sys
import threading
import time

HOST, PORT = sys.argv[1].rsplit(":", 1)
BURST, EXTRA = int(sys.argv[2]), int(sys.argv[3])
ORDER = "/car?search_radius=10"


def get(path, timeout=120.0):
    """(status, seconds) of one GET on a new connection; status 0 if it failed."""
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(HOST, int(PORT), timeout=timeout)
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start


def send_all(n, results):
    """Starts n orders at once (a thread each), their results appended as they end."""
    threads = [threading.Thread(target=lambda: results.append(get(ORDER))) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def probe(stop, latencies):
    while not stop.is_set():
        status, seconds = get("/", timeout=30.0)
        latencies.append((status, seconds))
        time.sleep(0.05)


def main():
    stop, latencies = threading.Event(), []
    prober = threading.Thread(target=probe, args=(stop, latencies))
    prober.start()
    burst, extra = [], []
    start = time.perf_counter()
    burst_threads = send_all(BURST, burst)
    time.sleep(0.5)  # the burst is read and holds the in-flight permits
    extra_threads = send_all(EXTRA, extra)
    for t in extra_threads + burst_threads:
        t.join()
    stop.set()
    prober.join()
    wall = time.perf_counter() - start

    ok = [s for s, _ in latencies if s == 200]
    secs = sorted(s * 1000 for _, s in latencies)
    print(f"orders: {BURST} + {EXTRA} car orders at search_radius=10, {wall:.1f} s in all")
    print(f"GET /: {len(latencies)} probes, {len(ok)} answered 200, "
          f"median {statistics.median(secs):.1f} ms, max {max(secs):.1f} ms")
    shed = sorted(s * 1000 for status, s in extra if status == 503)
    others = sorted(status for status, _ in extra if status != 503)
    if shed:
        print(f"extra orders: {len(shed)} of {EXTRA} got 503, in {shed[0]:.1f} to {shed[-1]:.1f} ms")
    else:
        print(f"extra orders: none of {EXTRA} got 503")
    if others:
        print(f"extra orders not shed: statuses {others}")
    burst_codes = sorted({status for status, _ in burst})
    burst_secs = sorted(s for _, s in burst)
    print(f"burst: statuses {burst_codes}, done in {burst_secs[0]:.1f} to {burst_secs[-1]:.1f} s")


main()
