"""Inside an agent's sandbox, which has no network: a TCP port on the sandbox's own loopback that
carries every connection to the gateway's unix socket, bound into the sandbox. The agent's model
traffic and its hooks reach Tether through it, and nothing else is reachable.

    python3 -I -S forward.py SOCKET PORT

Returns once the port is open (the forwarding goes on in a child), so the agent can start next.
Only the standard library: it runs with the sandbox's interpreter, outside Tether's packages."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _serve(listener: socket.socket, target: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(target)
        except OSError:
            client.close()
            continue
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> int:
    target, port = argv[1], int(argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    if os.fork():
        return 0  # the port is open: the caller goes on
    os.setsid()
    _serve(listener, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
