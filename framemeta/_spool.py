"""The writer's disk spool: batches that cannot be delivered are appended to
fsynced, checksummed segment files and handed back oldest first.

Layout of a spool directory::

    spool.lock                 flock()ed by the one process using the spool
    cursor                     "<segment> <offset>": everything before is delivered
    segment-000000000001.spool entries: b"FMS1", length (u32), crc32 (u32), payload

An entry is durable when `Spool.append` returns. A crash mid-append leaves a
torn tail, which the next `Spool` cuts off (that entry was never reported
durable). Damage anywhere else is refused with `SpoolError`, never skipped.
Delivery is at-least-once from the spool's point of view; the writer replays
entries through the idempotent insert path, so a crash between a commit and
`mark_delivered` duplicates nothing.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from pathlib import Path
from typing import Final

import attrs

from framemeta.errors import SpoolError

__all__ = ["SEGMENT_BYTES", "Spool", "SpoolEntry"]

logger = logging.getLogger("framemeta.spool")

SEGMENT_BYTES: Final = 64 * 1024 * 1024
"""A segment is closed and a new one started once it holds this many bytes."""

_MAGIC: Final = b"FMS1"
_HEADER: Final = struct.Struct("!4sII")  # magic, payload length, crc32 of payload
_MAX_PAYLOAD: Final = 1 << 31
_SEGMENT_NAME: Final = re.compile(r"^segment-(\d{12})\.spool$")
_LOCK_NAME: Final = "spool.lock"
_CURSOR_NAME: Final = "cursor"


@attrs.frozen
class SpoolEntry:
    """One spooled batch: ``payload`` as appended, found in ``segment`` at
    byte ``offset`` (of its header)."""

    segment: int
    offset: int
    payload: bytes


@attrs.frozen
class _Slot:
    segment: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + _HEADER.size + self.length


class Spool:
    """An append-only, crash-safe FIFO of byte payloads in ``directory``.

    Opening takes an exclusive lock (released by the OS if the process dies)
    and indexes the undelivered entries left by an earlier user. Raises
    `SpoolError` if another process holds the spool or a segment is damaged.
    Safe to call from several threads; one process uses a spool at a time.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = SEGMENT_BYTES):
        if segment_bytes <= _HEADER.size:
            raise ValueError(f"segment_bytes must exceed {_HEADER.size}, got {segment_bytes}")
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._mutex = threading.Lock()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory {self.directory}: {exc}") from exc
        self._lock_fd = self._take_lock()
        self._pending: collections.deque[_Slot] = collections.deque()
        self._write_fd: int | None = None
        self._write_segment = 0
        self._write_offset = 0
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    # -- public -------------------------------------------------------------

    @property
    def pending_batches(self) -> int:
        """Entries appended and not yet marked delivered."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Bytes on disk held by undelivered entries (headers included)."""
        with self._mutex:
            return sum(slot.end - slot.offset for slot in self._pending)

    def append(self, payload: bytes) -> tuple[int, int]:
        """Append one entry; it is on disk (fsynced) when this returns.
        Returns its place, ``(segment, offset)``, as `SpoolEntry` will give it.

        Raises `SpoolError` when the disk refuses the write (full, read-only);
        the entry is then not in the spool.
        """
        if len(payload) >= _MAX_PAYLOAD:
            raise SpoolError(f"a spool entry holds at most {_MAX_PAYLOAD - 1} bytes")
        entry = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._mutex:
            self._check_open()
            if self._write_fd is None or self._write_offset >= self._segment_bytes:
                self._start_segment(self._write_segment + 1)
            assert self._write_fd is not None
            offset = self._write_offset
            try:
                _write_all(self._write_fd, entry, offset)
                os.fsync(self._write_fd)
            except OSError as exc:
                # Cut off what part of the entry reached the file, so the
                # next append starts on a clean boundary.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._write_fd, offset)
                raise SpoolError(f"cannot write to the spool {self.directory}: {exc}") from exc
            self._write_offset = offset + len(entry)
            self._pending.append(_Slot(self._write_segment, offset, len(payload)))
            return self._write_segment, offset

    def oldest(self) -> SpoolEntry | None:
        """The oldest undelivered entry, or None when the spool is empty.

        Raises `SpoolError` if its bytes changed on disk since they were
        written (checksum mismatch).
        """
        with self._mutex:
            self._check_open()
            if not self._pending:
                return None
            slot = self._pending[0]
            path = self._segment_path(slot.segment)
            try:
                with path.open("rb") as segment:
                    segment.seek(slot.offset)
                    entry = segment.read(slot.end - slot.offset)
            except OSError as exc:
                raise SpoolError(f"cannot read the spool segment {path}: {exc}") from exc
            damage = _check_entry(entry, 0)
            if damage is not None:
                raise SpoolError(
                    f"spool segment {path} is damaged at byte {slot.offset} ({damage}); "
                    "move the file aside to go on"
                )
            payload = entry[_HEADER.size :]
            return SpoolEntry(slot.segment, slot.offset, payload)

    def mark_delivered(self, entry: SpoolEntry) -> None:
        """Record that ``entry`` (the oldest) is in the database.

        The cursor moves past it durably; fully delivered segments are
        deleted. Raises ValueError if ``entry`` is not the oldest.
        """
        with self._mutex:
            self._check_open()
            if not self._pending:
                raise ValueError("the spool is empty")
            slot = self._pending[0]
            if (slot.segment, slot.offset) != (entry.segment, entry.offset):
                raise ValueError(
                    f"entry {entry.segment}:{entry.offset} is not the oldest "
                    f"({slot.segment}:{slot.offset})"
                )
            self._pending.popleft()
            self._save_cursor(slot.segment, slot.end)
            following = self._pending[0].segment if self._pending else self._write_segment
            if slot.segment != following:
                self._unlink_segment(slot.segment)

    def close(self) -> None:
        """Release the lock and the files; idempotent. Undelivered entries stay
        on disk for the next `Spool` on this directory."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            if not self._pending and self._write_segment:
                # Everything is delivered: leave an empty directory behind.
                self._unlink_segment(self._write_segment)
            os.close(self._lock_fd)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Spool {state} {self.directory} pending={len(self._pending)}>"

    # -- opening ----------------------------------------------------------------

    def _take_lock(self) -> int:
        path = self.directory / _LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SpoolError(
                f"the spool {self.directory} is in use by another writer (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _recover(self) -> None:
        """Index what an earlier user left: entries after the cursor."""
        segments = sorted(
            int(match.group(1))
            for name in os.listdir(self.directory)
            if (match := _SEGMENT_NAME.match(name))
        )
        cursor_segment, cursor_offset = self._load_cursor()
        for number in segments:
            if number < cursor_segment:
                self._unlink_segment(number)  # delivered; its deletion was cut short
        live = [number for number in segments if number >= cursor_segment]
        for number in live:
            start = cursor_offset if number == cursor_segment else 0
            self._index_segment(number, start, last=number == live[-1])
        if live:
            self._write_segment = live[-1]
        else:
            self._write_segment = max(cursor_segment, segments[-1] if segments else 0)
        if self._pending:
            logger.warning(
                "spool %s holds %d undelivered batches from an earlier writer",
                self.directory,
                len(self._pending),
            )
        # Appends always go to a new segment: the old ones stay read-only.

    def _index_segment(self, number: int, start: int, *, last: bool) -> None:
        path = self._segment_path(number)
        data = path.read_bytes()
        offset = start
        while offset < len(data):
            damage = _check_entry(data, offset)
            if damage is None:
                (_, length, _) = _HEADER.unpack_from(data, offset)
                self._pending.append(_Slot(number, offset, length))
                offset += _HEADER.size + length
                continue
            # A crash can also leave zeros where an unfinished append was.
            torn = damage == "torn" or not data[offset:].strip(b"\x00")
            if torn and last:
                logger.warning(
                    "spool segment %s ends in a torn write (%d bytes), cut off",
                    path,
                    len(data) - offset,
                )
                with path.open("r+b") as segment:
                    segment.truncate(offset)
                    os.fsync(segment.fileno())
                return
            raise SpoolError(
                f"spool segment {path} is damaged at byte {offset} ({damage}); "
                "move the file aside to go on"
            )

    def _load_cursor(self) -> tuple[int, int]:
        path = self.directory / _CURSOR_NAME
        try:
            text = path.read_text()
        except FileNotFoundError:
            return 0, 0
        try:
            segment, offset = (int(part) for part in text.split())
        except ValueError:
            raise SpoolError(
                f"the spool cursor {path} is damaged ({text[:40]!r}); "
                "delete it to replay the whole spool (replays insert nothing twice)"
            ) from None
        return segment, offset

    # -- files ------------------------------------------------------------------

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"segment-{number:012d}.spool"

    def _start_segment(self, number: int) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        path = self._segment_path(number)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool segment {path}: {exc}") from exc
        _fsync_directory(self.directory)
        self._write_fd = fd
        self._write_segment = number
        self._write_offset = 0

    def _save_cursor(self, segment: int, offset: int) -> None:
        path = self.directory / _CURSOR_NAME
        staging = path.with_suffix(".new")
        with staging.open("w") as handle:
            handle.write(f"{segment} {offset}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
        _fsync_directory(self.directory)

    def _unlink_segment(self, number: int) -> None:
        if number == self._write_segment and self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
            self._write_offset = 0
        with contextlib.suppress(FileNotFoundError):
            self._segment_path(number).unlink()

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"the spool {self.directory} is closed")


def _check_entry(data: bytes, offset: int) -> str | None:
    """None when a whole, intact entry starts at ``offset``; else "torn" (it
    runs past the end of the data: a crash mid-append) or what is wrong."""
    if offset + _HEADER.size > len(data):
        return "torn"
    magic, length, checksum = _HEADER.unpack_from(data, offset)
    if magic != _MAGIC:
        return "bad magic"
    end = offset + _HEADER.size + length
    if end > len(data):
        return "torn"
    if zlib.crc32(data[offset + _HEADER.size : end]) != checksum:
        # A checksum mismatch on the very last entry is a torn write too
        # (the length reached the disk, not all of the payload).
        return "torn" if end == len(data) else "checksum mismatch"
    return None


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
