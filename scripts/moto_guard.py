"""Runs the moto server on loopback for as long as whoever started it is alive.

Usage: .venv/bin/python scripts/moto_guard.py [PORT]   (PORT 0 or absent: a free port)

Prints "READY <port>" once serving, then waits on standard input: when the parent closes it,
exits, or dies (even by SIGKILL), the pipe reaches EOF and the server stops. No leftovers.
"""

import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _, actual = server.get_host_and_port()
    print(f"READY {actual}", flush=True)
    try:
        sys.stdin.read()
    except (ValueError, KeyboardInterrupt):
        pass
    server.stop()


if __name__ == "__main__":
    main()
