"""A durable local spool for events that cannot reach Kafka right now.

Append-only segment files of length-prefixed, CRC-checked records, fsync'd before ``append``
returns: once an SMTP client has been told 250, the event it caused is on Kafka or on disk. A
torn record at the tail (a crash mid-write) is cut off when the spool opens. Records are handed
out oldest first and acknowledged by position; a fully acknowledged segment is deleted. The
spool is bounded: when full, ``append`` raises SpoolFull and the node answers 451.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">II")  # payload length, crc32
_NONE = 0xFFFFFFFF
SEGMENT_BYTES = 16 * 1024 * 1024


class SpoolFull(Exception):
    """The spool reached its size limit: stop accepting work that would need it."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    topic: str
    key: bytes | None
    value: bytes | None

    def encode(self) -> bytes:
        topic = self.topic.encode("utf-8")
        parts = [struct.pack(">H", len(topic)), topic]
        for blob in (self.key, self.value):
            parts.append(struct.pack(">I", _NONE if blob is None else len(blob)))
            if blob is not None:
                parts.append(blob)
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes) -> SpoolRecord:
        (topic_len,) = struct.unpack_from(">H", payload, 0)
        offset = 2 + topic_len
        topic = payload[2:offset].decode("utf-8")
        blobs: list[bytes | None] = []
        for _ in range(2):
            (length,) = struct.unpack_from(">I", payload, offset)
            offset += 4
            if length == _NONE:
                blobs.append(None)
            else:
                blobs.append(payload[offset : offset + length])
                offset += length
        return cls(topic, blobs[0], blobs[1])


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int
    """Byte offset just after the record."""


class Spool:
    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._acked = self._read_ack()
        self._segments = sorted(int(p.stem.split("-")[1]) for p in directory.glob("segment-*.log"))
        for segment in self._segments:
            self._truncate_torn_tail(self._path(segment))
        if not self._segments:
            self._segments = [max(self._acked.segment, 0)]
            self._path(self._segments[0]).touch()
        self._size = self._measure()

    # ---- writing -------------------------------------------------------------------------------

    def append(self, records: list[SpoolRecord], *, admitted: bool = False) -> list[Position]:
        """Write records durably (one fsync for the batch), or raise SpoolFull writing nothing;
        each record's position (what :meth:`peek` will pair it with).

        ``admitted`` records belong to work already accepted (a message the destination took):
        they are written past the limit, which only turns *new* work away."""
        frames = []
        for record in records:
            payload = record.encode()
            frames.append(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        data = b"".join(frames)
        if not admitted and self._size + len(data) > self.max_bytes:
            raise SpoolFull(f"spool {self.directory} is full ({self.max_bytes} bytes)")
        tail = self._path(self._segments[-1])
        if tail.stat().st_size + len(data) > self.segment_bytes and tail.stat().st_size > 0:
            self._segments.append(self._segments[-1] + 1)
            tail = self._path(self._segments[-1])
        positions = []
        end = tail.stat().st_size if tail.exists() else 0
        for frame in frames:
            end += len(frame)
            positions.append(Position(self._segments[-1], end))
        with tail.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self._fsync_dir()
        self._size += len(data)
        return positions

    # ---- reading -------------------------------------------------------------------------------

    def peek(self, limit: int = 1000) -> list[tuple[Position, SpoolRecord]]:
        """Unacknowledged records, oldest first."""
        out: list[tuple[Position, SpoolRecord]] = []
        for segment in self._segments:
            if segment < self._acked.segment:
                continue
            start = self._acked.offset if segment == self._acked.segment else 0
            for end, record in self._records(segment, start):
                out.append((Position(segment, end), record))
                if len(out) >= limit:
                    return out
        return out

    def ack(self, through: Position) -> None:
        """Everything up to and including ``through`` was delivered."""
        self._acked = max(self._acked, through)
        tmp = self.directory / "acked.tmp"
        tmp.write_text(f"{self._acked.segment} {self._acked.offset}\n")
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.directory / "acked")
        for segment in list(self._segments[:-1]):
            path = self._path(segment)
            if segment < self._acked.segment or (
                segment == self._acked.segment and self._acked.offset >= path.stat().st_size
            ):
                path.unlink()
                self._segments.remove(segment)
        self._fsync_dir()
        self._size = self._measure()

    @property
    def depth(self) -> int:
        return len(self.peek(limit=10**9))

    @property
    def size_bytes(self) -> int:
        """Bytes not yet acknowledged (kept in memory: asked on every transaction)."""
        return self._size

    @property
    def admits_new_work(self) -> bool:
        return self._size < self.max_bytes

    def _measure(self) -> int:
        total = sum(self._path(s).stat().st_size for s in self._segments)
        if self._acked.segment in self._segments:
            total -= self._acked.offset
        return max(total, 0)

    # ---- internals -------------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"segment-{segment:010d}.log"

    def _records(self, segment: int, start: int):  # type: ignore[no-untyped-def]
        data = self._path(segment).read_bytes()
        offset = start
        while offset + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            payload = data[offset + _HEADER.size : end]
            if end > len(data) or zlib.crc32(payload) != crc:
                return
            yield end, SpoolRecord.decode(payload)
            offset = end

    def _truncate_torn_tail(self, path: Path) -> None:
        data = path.read_bytes()
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if end > len(data) or zlib.crc32(data[offset + _HEADER.size : end]) != crc:
                break
            offset = end
        if offset != len(data):
            with path.open("r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())

    def _read_ack(self) -> Position:
        path = self.directory / "acked"
        if not path.is_file():
            return Position(0, 0)
        segment, offset = path.read_text().split()
        return Position(int(segment), int(offset))

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
