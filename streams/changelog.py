"""Faust tables whose changelog writes the agent can wait for.

A Faust table sends each write to its changelog topic in the background and drops the future,
and Faust flushes its producer before it commits offsets. That is not enough for the worker:

* its three tables have a changelog topic each, and a worker killed between two writes leaves
  any of those topics behind the others (a journal entry restored without the record it went
  with made the redelivered message a repeat, and its count was lost). So a batch writes its
  tables in steps, and each step waits for the one before to be acknowledged
  (``streams.processor``);
* Faust's flush returns once its send buffer is empty, while the last message taken from the
  buffer may still be on its way to the producer: the commit that follows can cover a write
  that is not in Kafka. Waiting for every write of a batch before its messages are
  acknowledged closes that gap.

The writes are sent a batch at a time: Faust sends each one through its producer buffer as a
message of its own, with a future, two callbacks and a persisted-offset write in RocksDB when it
is acknowledged; that was a third of the worker's time on mail to addresses being discovered
(py-spy, bench/README.md). Here a table keeps its changelog records until they are waited for,
then sends each partition's as Kafka record batches (``streams.batches``) and writes the
partition's persisted offset once a batch. The store itself is written at once, as Faust does,
but without RocksDB's write-ahead log (:class:`ChangelogCacheStore`). The records are the ones
Faust would send (its serializers, the changelog partition of the message being processed), so
Faust's recovery and standbys read them as their own. Only
at-least-once processing is supported: under exactly-once Faust keeps persisted offsets until
its transaction commits.

The same class reads a whole table faster than Faust does (:meth:`AcknowledgedTable.stored_items`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import partial
from json.encoder import encode_basestring_ascii
from typing import Any

import faust
import rocksdict
from faust import stores
from faust.serializers.codecs import get_codec
from faust.serializers.codecs import json as faust_json
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event
from faust.types import TP

from smtp_discovery.streams.batches import send_batches


class AcknowledgedTable(faust.Table):  # type: ignore[misc]
    """A table whose changelog records are sent, a partition's batch at a time, when they are
    waited for (:func:`acknowledged`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsent: dict[int, list[tuple[bytes, bytes | None]]] = {}
        """Changelog records (key, value; None deletes) by partition, in the order written."""
        self._direct: tuple[Any, Callable[[Any], bytes] | None] = (None, None)
        """(store, its key encoder): what :meth:`_key_encoder` found for the store."""

    def __setitem__(self, key: Any, value: Any) -> None:
        store = self.data
        dump_key = self._key_encoder(store)
        if dump_key is None or type(key) is not str or type(value) is not bytes:
            super().__setitem__(key, value)
            return
        # The key encoded once, for the store and its changelog record alike (Faust's changelog
        # apply puts a record's key bytes into the store as they are). It goes straight into
        # the database of the message's partition, where Faust's ``_set`` puts it too, without
        # Faust's index of keys to partitions: a read or a deletion with a message at hand goes
        # to that partition's database, and only one without would use the index (it then
        # tries each database). The index was 0.9 of a write's 5.9 us, before the log went.
        encoded = dump_key(key)
        partition = _partition()
        store._db_for_partition(partition).put(encoded, value)
        self._unsent_in(partition).append((encoded, value))
        self._sensor_on_set(self, key, value)

    def __delitem__(self, key: Any) -> None:
        store = self.data
        dump_key = self._key_encoder(store)
        if dump_key is None or type(key) is not str:
            super().__delitem__(key)
            return
        encoded = dump_key(key)
        partition = _partition()
        store._db_for_partition(partition).delete(encoded)
        self._unsent_in(partition).append((encoded, None))
        self._sensor_on_del(self, key)

    def _new_store_by_url(self, url: Any) -> Any:
        """Faust's store for ``url``; for RocksDB, one written without its write-ahead log
        (:class:`ChangelogCacheStore`)."""
        if stores.by_url(url) is not faust_rocksdb.Store:
            return super()._new_store_by_url(url)
        return ChangelogCacheStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )

    def _key_encoder(self, store: Any) -> Callable[[Any], bytes] | None:
        """For a store a write can go to directly (serialized bytes, JSON keys, raw values),
        the codec that encodes a ``str`` key, as Faust's serializer registry would (None for
        any other store). Found once per store: the registry's lookups, per write, were two
        fifths of a write's cost (cProfile, bench/README.md)."""
        known, dump_key = self._direct
        if known is not store:
            dump_key = _str_key_encoder(self.key_serializer) if self._bytes_store(store) else None
            self._direct = (store, dump_key)
        return dump_key

    def _bytes_store(self, store: Any) -> bool:
        """A RocksDB store (through rocksdict), with JSON keys and raw values: one a write can
        go to directly."""
        return (
            isinstance(store, faust_rocksdb.Store)
            and store.use_rocksdict
            and self.key_serializer == "json"
            and self.value_serializer == "raw"
        )

    def on_key_set(self, key: Any, value: Any) -> None:
        topic = self.changelog_topic
        self._unsent().append(
            (
                topic.prepare_key(key, self.key_serializer)[0],
                topic.prepare_value(value, self.value_serializer)[0],
            )
        )
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        self._unsent().append((self.changelog_topic.prepare_key(key, self.key_serializer)[0], None))
        self._sensor_on_del(self, key)

    def _unsent(self) -> list[tuple[bytes, bytes | None]]:
        return self._unsent_in(_partition())

    def _unsent_in(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """The records waiting for ``partition``."""
        unsent = self.unsent.get(partition)
        if unsent is None:
            unsent = self.unsent[partition] = []
        return unsent

    def take_unsent(self) -> Callable[[], Awaitable[list[Awaitable[None]]]]:
        """Take the records written so far, and return what sends them, a partition's at a
        time (``streams.batches``): its awaitables return once each batch is acknowledged and
        its partition's offset persisted. Taken before anything is sent, so that nothing can
        come between the writes and their sending (a rebalance drops what was not taken)."""
        unsent, self.unsent = self.unsent, {}
        return partial(self._send, unsent)

    async def _send(
        self, unsent: dict[int, list[tuple[bytes, bytes | None]]]
    ) -> list[Awaitable[None]]:
        if not unsent:
            return []
        producer = self.app.producer._ensure_producer()
        topic = self.changelog_topic.get_topic_name()
        sent = []
        for partition, records in unsent.items():
            tp = TP(topic, partition)
            for last in await send_batches(producer, topic, partition, records):
                sent.append(self._persisted(tp, last))
        return sent

    async def _persisted(self, tp: TP, last: Awaitable[int]) -> None:
        """Once a batch is acknowledged, the store's offset for its partition: that of its last
        record, which Faust's recovery then reads past."""
        self.data.set_persisted_offset(tp, await last)

    def stored_items(self) -> Iterator[tuple[Any, Any]]:
        """What ``items()`` yields (the keys and values of the partitions this worker actively
        owns), for a walk over the whole table.

        Faust decodes each key and value through its codec registry: over a million groups
        that was a third of rebuilding the due index (py-spy), with the agent waiting. A store
        that keeps serialized bytes is read here directly, a JSON key (a ``str`` key type)
        decoded by ``json`` and a raw value (``bytes``) taken as it is; any other table goes
        through ``items()``."""
        store = self.data
        if not self._bytes_store(store):
            yield from self.items()
            return
        loads = json.loads
        for key, value in store._iteritems():
            yield loads(key), value


def _partition() -> int:
    """The partition the tables write in: that of the message being processed, as in Faust's
    ``partition_for_key``."""
    event = current_event()
    if event is None:
        raise TypeError("Cannot modify table key from outside of stream iteration")
    return int(event.message.partition)


_WITHOUT_WAL = rocksdict.WriteOptions()
_WITHOUT_WAL.disable_wal = True


class ChangelogCacheStore(faust_rocksdb.Store):  # type: ignore[misc]
    """Faust's RocksDB store, written without RocksDB's write-ahead log, as Kafka Streams
    writes its own: a 350-byte put took 4.4 us with the log and 1.9 without (rocksdict, in a
    table's store, on this machine), and a message makes two or three.

    The changelog topic is the table's durable copy; the store is a copy of it that Faust
    brings up to date from the offset the store persists (``set_persisted_offset``, a key of
    the same database). A killed worker's database loses what was not yet flushed to its
    files, the persisted offset with the data, in the order written: it opens as it stood at
    an earlier write, offset included, and Faust reads the changelog on from there. A store
    closed in order flushes first (RocksDB flushes on close what no log holds). What it costs
    is a longer restore after a kill: what the unflushed write buffers held (64 MB each, three
    at most, a partition)."""

    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        if self.use_rocksdict:
            db.set_write_options(_WITHOUT_WAL)
        return db


def _json_str_key(key: str) -> bytes:
    """A ``str`` key as Faust's ``json`` codec encodes it: ``json.dumps`` with its default
    ``ensure_ascii``, which for a string is the C escaper alone (2.4 against 0.17 us a key:
    ``json.dumps`` with Faust's encoder class makes an encoder object each call)."""
    return encode_basestring_ascii(key).encode("ascii")


def _str_key_encoder(serializer: str) -> Callable[[str], bytes]:
    """What encodes a ``str`` key for ``serializer``: the registry's codec, or, for Faust's
    plain ``json`` codec, the same bytes made directly (a test holds the two equal)."""
    codec = get_codec(serializer)
    if type(codec) is faust_json and len(codec.nodes) == 1:
        return _json_str_key
    return codec.dumps


async def acknowledged(tables: Iterable[AcknowledgedTable]) -> None:
    """Send every write made to ``tables`` so far, and return once Kafka acknowledged them all
    (raise what a failed one raised)."""
    sends = [table.take_unsent() for table in tables]
    sent = []
    for send in sends:
        sent.extend(await send())
    if sent:
        await asyncio.gather(*sent)
