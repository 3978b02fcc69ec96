#!/usr/bin/env python3
"""Accept TCP connections on the given loopback ports and never answer: a backend that hangs."""
import socket
import sys
import threading


def hold(port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1024)
    held = []
    while True:
        conn, _ = server.accept()
        held.append(conn)
        if len(held) > 4096:  # bounded: the oldest connection is dropped
            held.pop(0).close()


for p in sys.argv[1:]:
    threading.Thread(target=hold, args=(int(p),), daemon=True).start()
threading.Event().wait()
