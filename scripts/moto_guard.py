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

Two more costs of moto grow with the data, not with the request, and are cut here with the same
answers (a soak keeps thousands of messages queued and thousands of items in the jobs table):
- a Query of a table reads every item of every partition to keep those of one, and a Query of
  an index sorts the whole table before sorting what it keeps ([`partition_queries`]);
- SQS reads the clock through `datetime` for every message it looks at, and every SendMessage and
  every received message recounts the queue three times for attributes nobody asked for
  ([`fast_sqs`]).
Two more are per request: finding the service lists moto's package directory, and werkzeug
formats a log line that goes nowhere (standard error is discarded) ([`per_request`]).
"""

import copy
import logging
import sys
import threading
import time

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


def partition_queries():
    """A Query of a table (not of an index) reads the items of its partition only.

    moto's `Table.query` lists `all_items()` of the table and keeps those whose hash key matches:
    the same items as the partition's own dict, which this hands it instead, keeping only those
    that meet the sort-key condition moto would test after sorting them all. An index query
    keeps its scan of every item, but not the sort of the whole table that `all_items` makes
    first: the query sorts what it keeps itself, by keys that are unique per item. Requests are
    serialized (see above), so what the query is about is passed on the table.
    """
    from moto.dynamodb.comparisons import get_comparison_func
    from moto.dynamodb.models.table import Table

    query, all_items = Table.query, Table.all_items

    def partition_query(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if not index_name and hash_key is not None and self.range_key_attr:
            # The sort-key condition moto applies to each item after sorting the partition,
            # applied before: the same items, and only those are sorted (a hot job's partition
            # holds 100,000 items, a query reads a few).
            comparison = args[0] if args else kwargs.get("range_comparison")
            values = args[1] if len(args) > 1 else kwargs.get("range_objs")
            keep = None
            if comparison:
                func = get_comparison_func(comparison)
                bounds = [v.cast_value for v in values]
                keep = lambda item: func(item.range_key.cast_value, *bounds)  # noqa: E731
            self._relay_query = ("partition", hash_key, keep)
        else:
            self._relay_query = ("all", None, None)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            self._relay_query = None

    def items_of_partition(self):
        what = getattr(self, "_relay_query", None)
        if what is None:
            return all_items(self)
        kind, partition, keep = what
        if kind == "partition":
            items = self.items.get(partition, {}).values()
            return [i for i in items if keep(i)] if keep else list(items)
        if self.range_key_attr:
            return [item for part in self.items.values() for item in part.values()]
        return list(self.items.values())

    Table.query = partition_query
    Table.all_items = items_of_partition


def fast_sqs():
    """The same SQS answers without the costs that grow with the queue.

    - moto's clock (`unix_time`, `unix_time_millis`) builds two `datetime`s per call, and it is
      called for every message a receive or a count looks at: `time.time()` is the same number.
    - Each message a receive returns checks its retention period through `get_queue_attributes`,
      which computes every attribute three times, counting the queue each time: the retention
      period is read directly.
    - SendMessage reads `ContentBasedDeduplication` from the full attributes: the three
      approximate counts (never read there) are not computed while a message is sent.
    """
    import moto.sqs.models as sqs

    def unix_time(dt=None):
        return time.time() if dt is None else clock(dt)

    def unix_time_millis(dt=None):
        return time.time() * 1000.0 if dt is None else clock_millis(dt)

    clock, clock_millis = sqs.unix_time, sqs.unix_time_millis
    sqs.unix_time, sqs.unix_time_millis = unix_time, unix_time_millis

    def retained(self, queue_name, message):
        period = self.get_queue(queue_name).message_retention_period
        return int(period) + message.sent_timestamp / 1000 > time.time()

    sqs.SQSBackend.is_message_valid_based_on_retention_period = retained

    sending = threading.local()
    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        count = getattr(sqs.Queue, name).fget

        def uncounted_while_sending(self, count=count):
            return 0 if getattr(sending, "active", False) else count(self)

        setattr(sqs.Queue, name, property(uncounted_while_sending))

    send = sqs.SQSBackend.send_message

    def send_message(self, *args, **kwargs):
        sending.active = True
        try:
            return send(self, *args, **kwargs)
        finally:
            sending.active = False

    sqs.SQSBackend.send_message = send_message


def per_request():
    """No directory listing and no discarded log line per request."""
    import moto.backends as backends

    modules = list(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


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
    partition_queries()
    fast_sqs()
    per_request()
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
