"""moto's server, with DynamoDB Query reading only the queried partition and Scan reading
only from where its page starts.

Stock moto answers every Query by listing and sorting *all* items of the table, then keeping
those of the partition: O(n log n) in the table's size, where DynamoDB reads one partition. The
order gate and the producers' key checks issue one Query per key, so on stock moto a drain slows
down quadratically as the table grows (measured: 9 ms per Query at 1,000 items, 55 ms at 5,000,
and a 100,000-event chaos run saturating moto for minutes). Its Scan does the same for every
page, then walks past the earlier pages item by item, so scanning a table page by page (the
sweep) is quadratic too.

This launcher changes only which items moto's own loops see, for base tables with a sort key:
a Query sees the queried partition; a Scan sees the table's items in moto's order (partition,
then sort key) starting at its page's start key, produced as moto's loop asks for them. moto still
sorts, pages, applies key conditions, filters and limits exactly as before. Index queries and
scans, and tables without a sort key, are untouched.

Run exactly as `moto_server` (same arguments); the stack starts moto this way.
"""

import sys
import threading

from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_scope = threading.local()
_all_items = Table.all_items
_query = Table.query
_scan = Table.scan


def _partition_items(self):
    # Only inside a base-table Query or Scan of this table on this thread (moto serves requests
    # on threads, so other requests still see every item).
    partition = getattr(_scope, "partition", None)
    if partition is not None and partition[0] is self:
        return list(partition[1].values())
    scan = getattr(_scope, "scan_from", None)
    if scan is not None and scan[0] is self:
        return _items_from(self, scan[1])
    return _all_items(self)


def _items_from(table, start):
    """The table's items in all_items' order, from the partition and sort key of `start` (a
    Scan's ExclusiveStartKey, or None) on: moto skips the start item itself, as it always did.
    Keys are copied before iterating, as other threads write to the table meanwhile."""
    start_hash = start_range = None
    if start is not None:
        start_hash = DynamoType(start[table.hash_key_attr])
        start_range = DynamoType(start[table.range_key_attr])
    for hash_key in sorted(list(table.items.keys())):
        if start_hash is not None and hash_key < start_hash:
            continue
        partition = table.items.get(hash_key) or {}
        for range_key in sorted(list(partition.keys())):
            if start_hash is not None and hash_key == start_hash and range_key < start_range:
                continue
            item = partition.get(range_key)
            if item is not None:
                yield item


def _query_one_partition(self, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is not None or not self.range_key_attr:
        return _query(self, hash_key, *args, **kwargs)
    # `items` is a defaultdict: `get` does not create the partition.
    _scope.partition = (self, self.items.get(hash_key, {}))
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _scope.partition = None


def _scan_from_start(self, filters, limit, exclusive_start_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[1] if len(args) > 1 else None)
    if index_name is not None or not self.range_key_attr:
        return _scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
    if exclusive_start_key is not None and not (
        self.hash_key_attr in exclusive_start_key and self.range_key_attr in exclusive_start_key
    ):
        return _scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
    _scope.scan_from = (self, exclusive_start_key)
    try:
        return _scan(self, filters, limit, exclusive_start_key, *args, **kwargs)
    finally:
        _scope.scan_from = None


Table.all_items = _partition_items
Table.query = _query_one_partition
Table.scan = _scan_from_start

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
