"""A loopback TCP proxy in front of PostgreSQL that can cut a connection
right after forwarding a COMMIT: the server commits, the client never hears.
That is the ambiguous failure exactly-once delivery must survive."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class CommitCuttingProxy:
    """Forwards 127.0.0.1:<port> to the server; cuts the first ``cuts``
    connections that send a COMMIT, ``delay`` seconds after forwarding it."""

    def __init__(self, target_port: int, *, cuts: int, delay: float = 0.3) -> None:
        self._target_port = target_port
        self._cuts_left = cuts
        self._delay = delay
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.cut = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target_port))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _take_cut(self) -> bool:
        with self._lock:
            if self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            self.cut += 1
            return True

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        with client, upstream:
            while not self._stopping:
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    target = upstream if source is client else client
                    target.sendall(data)
                    if source is client and b"COMMIT" in data.upper() and self._take_cut():
                        # Let the server run the COMMIT, then cut before the
                        # client reads the answer.
                        time.sleep(self._delay)
                        return

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(2)
