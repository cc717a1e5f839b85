"""moto's server, with a sorted key index per partition: for `make bench` only.

moto answers every table `Query` by walking every item of the table and sorting the
partition it wants, so each query costs the size of the whole table. A benchmark of a
50,000-customer partner makes hundreds of thousands of items and one query per
customer, and against plain moto it does not finish in hours. Real DynamoDB reads a
query's items from a B-tree on the sort key.

This launcher gives moto the same shape: it keeps, per partition of a table with a
string sort key, the sort keys in order, and hands moto's own `Table.query` only the
items the key condition, the start key and the limit can reach. moto still applies
the key condition, the start key, the limit, the 1 MB page size, the filter and the
projection itself, so answers are moto's; only the walk is shorter. Index queries and
tables without a string sort key go to moto unchanged.

The tests use plain moto (`moto_server`); only the benchmark starts this.

    python scripts/moto_indexed.py -H 127.0.0.1 -p 5055
"""

import bisect
import sys
import threading

from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.server import main

_lock = threading.RLock()
_narrowed = threading.local()

_original_put = Table.put_item
_original_delete = Table.delete_item
_original_query = Table.query
_original_all_items = Table.all_items


def _sort_keys(table, hash_key):
    """The partition's string sort keys in order, built once, then kept up to date."""
    index = table.__dict__.setdefault("_sorted_sort_keys", {})
    keys = index.get(hash_key)
    if keys is None:
        keys = sorted(rk.value for rk in table.items.get(hash_key, {}))
        index[hash_key] = keys
    return keys


def _string_sort_key(table, value):
    return (
        table.range_key_attr is not None
        and isinstance(value, DynamoType)
        and value.type == "S"
    )


def put_item(self, item_attrs, *args, **kwargs):
    with _lock:
        item = _original_put(self, item_attrs, *args, **kwargs)
        index = self.__dict__.get("_sorted_sort_keys")
        if index is not None and item.hash_key in index and _string_sort_key(self, item.range_key):
            keys = index[item.hash_key]
            at = bisect.bisect_left(keys, item.range_key.value)
            if at == len(keys) or keys[at] != item.range_key.value:
                keys.insert(at, item.range_key.value)
        return item


def delete_item(self, hash_key, range_key):
    with _lock:
        item = _original_delete(self, hash_key, range_key)
        index = self.__dict__.get("_sorted_sort_keys")
        if item is not None and index is not None and hash_key in index and _string_sort_key(self, range_key):
            keys = index[hash_key]
            at = bisect.bisect_left(keys, range_key.value)
            if at < len(keys) and keys[at] == range_key.value:
                del keys[at]
        return item


def _reachable(keys, comparison, values, start, forward, limit):
    """The slice of `keys` the key condition, the start key and the limit can reach."""
    lo, hi = 0, len(keys)
    op = (comparison or "").upper()
    if op == "BEGINS_WITH":
        lo = bisect.bisect_left(keys, values[0])
        hi = lo
        while hi < len(keys) and keys[hi].startswith(values[0]):
            hi += 1
    elif op == "=":
        lo, hi = bisect.bisect_left(keys, values[0]), bisect.bisect_right(keys, values[0])
    elif op == "<":
        hi = bisect.bisect_left(keys, values[0])
    elif op == "<=":
        hi = bisect.bisect_right(keys, values[0])
    elif op == ">":
        lo = bisect.bisect_right(keys, values[0])
    elif op == ">=":
        lo = bisect.bisect_left(keys, values[0])
    elif op == "BETWEEN":
        lo, hi = bisect.bisect_left(keys, values[0]), bisect.bisect_right(keys, values[1])
    elif op:
        return None  # a comparison this index does not know: let moto walk
    if start is not None:
        if forward:
            lo = max(lo, bisect.bisect_right(keys, start))
        else:
            hi = min(hi, bisect.bisect_left(keys, start))
    hi = max(lo, hi)
    if forward:
        if limit:
            hi = min(hi, lo + limit)
        # moto ends a page with a next key as soon as it meets an item after a full
        # page, in the condition or not: hand it that one item too.
        return keys[lo:hi + 1]
    if limit:
        lo = max(lo, hi - limit)
    return keys[max(lo - 1, 0):hi]


def query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
          scan_index_forward, projection_expressions, index_name=None, *args, **kwargs):
    with _lock:
        candidates = None
        if index_name is None and hash_key is not None and self.range_key_attr is not None:
            partition = self.items.get(hash_key, {})
            # One key tells the partition's sort key type (a table has one).
            first = next(iter(partition), None)
            if first is None or _string_sort_key(self, first):
                start = None
                if exclusive_start_key:
                    start = exclusive_start_key.get(self.range_key_attr, {}).get("S")
                values = [v.value for v in range_objs]
                if all(isinstance(v, str) for v in values):
                    keys = _reachable(
                        _sort_keys(self, hash_key), range_comparison, values, start,
                        scan_index_forward is not False, limit,
                    )
                    if keys is not None:
                        candidates = [partition[DynamoType({"S": k})] for k in keys]
        _narrowed.items = candidates
        try:
            return _original_query(
                self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                scan_index_forward, projection_expressions, index_name, *args, **kwargs,
            )
        finally:
            _narrowed.items = None


def all_items(self):
    items = getattr(_narrowed, "items", None)
    if items is not None:
        return list(items)
    return _original_all_items(self)


Table.put_item = put_item
Table.delete_item = delete_item
Table.query = query
Table.all_items = all_items

if __name__ == "__main__":
    main(sys.argv[1:])
