"""Runs the moto server on loopback for as long as whoever started it is alive.

Usage: .venv/bin/python scripts/moto_guard.py [PORT]   (PORT 0 or absent: a free port)

Prints "READY <port>" once serving, then waits on standard input: when the parent closes it,
exits, or dies (even by SIGKILL), the pipe reaches EOF and the server stops. No leftovers.

DynamoDB requests are served one at a time. moto's TransactWriteItems is not isolated: a
canceled transaction rolls its tables back to a snapshot taken when it began, wiping any write
another thread made meanwhile. Real DynamoDB transactions are isolated; serializing DynamoDB
requests makes the emulator keep that promise. Other services (SQS long polls) stay concurrent.

moto also snapshots every table a transaction touches (a deep copy of the whole table) to roll
it back, so each transaction costs time in proportion to the table: a soak of thousands of
deliveries slows to seconds per write. With requests serialized, keeping only the items the
transaction names and restoring those on a cancel is the same rollback at the cost of the items.
"""

import copy

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

DYNAMODB = threading.Lock()


def item_level_transactions():
    """Transactions snapshot and restore the items they name, not whole tables."""
    import moto.dynamodb.models as models

    class NoTableCopy:
        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, models.Table):
                return value  # the items are saved below instead
            return copy.deepcopy(value, memo)

    models.copy = NoTableCopy()
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        saved = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            name = op.get("TableName")
            if name not in self.tables:
                continue
            table = self.tables[name]
            if "Key" in op:
                key = op["Key"]
            elif "Item" in op:
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                continue
            current = self.get_item(name, key)
            saved.append((name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
        try:
            return original(self, transact_items)
        except Exception:
            for name, key, attrs in reversed(saved):
                if self.get_item(name, key) is not None:
                    self.delete_item(name, key)
                if attrs is not None:
                    self.put_item(name, attrs)
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


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
    item_level_transactions()
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
