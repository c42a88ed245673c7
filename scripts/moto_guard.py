"""Runs the moto server on loopback for as long as whoever started it is alive.

Usage: .venv/bin/python scripts/moto_guard.py [PORT]   (PORT 0 or absent: a free port)

Prints "READY <port>" once serving, then waits on standard input: when the parent closes it,
exits, or dies (even by SIGKILL), the pipe reaches EOF and the server stops. No leftovers.

DynamoDB requests are served one at a time. moto's TransactWriteItems is not isolated: a
canceled transaction rolls its tables back to a snapshot taken when it began, wiping any write
another thread made meanwhile. Real DynamoDB transactions are isolated; serializing DynamoDB
requests makes the emulator keep that promise. Other services (SQS long polls) stay concurrent.
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

DYNAMODB = threading.Lock()


def serialize_dynamodb(app):
    def wrapped(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with DYNAMODB:
                # Consume the response inside the lock: the operation runs while it is built.
                body = list(app(environ, start_response))
            return body
        return app(environ, start_response)

    return wrapped


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = serialize_dynamodb(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        sys.stdin.read()
    except (ValueError, KeyboardInterrupt):
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
