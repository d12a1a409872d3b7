"""The disk spool: FIFO across reopenings, one user at a time, torn tails cut,
damage refused, and what a SIGKILLed process appended is still there."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from framemeta import SpoolError
from framemeta._spool import Spool


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.spool"))


def _drain(spool: Spool) -> list[bytes]:
    payloads = []
    while (entry := spool.oldest()) is not None:
        payloads.append(entry.payload)
        spool.mark_delivered(entry)
    return payloads


def test_entries_come_back_oldest_first_after_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for index in range(5):
        spool.append(f"batch {index}".encode())
    entry = spool.oldest()
    assert entry is not None
    spool.mark_delivered(entry)
    spool.close()

    reopened = Spool(tmp_path)
    assert reopened.pending_batches == 4
    assert _drain(reopened) == [f"batch {index}".encode() for index in range(1, 5)]
    reopened.close()


def test_an_entry_not_marked_delivered_is_handed_out_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"first")
    spool.append(b"second")
    assert (entry := spool.oldest()) is not None
    assert entry.payload == b"first"
    spool.close()  # as if the process died between the commit and the mark

    reopened = Spool(tmp_path)
    assert _drain(reopened) == [b"first", b"second"]
    reopened.close()


def test_delivered_segments_are_deleted_and_an_empty_spool_leaves_none(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1024)
    for _ in range(20):
        spool.append(b"x" * 300)
    assert len(_segments(tmp_path)) > 3
    assert spool.pending_bytes == 20 * (300 + 12)

    _drain(spool)
    assert len(_segments(tmp_path)) <= 1
    spool.close()
    assert _segments(tmp_path) == []


def test_mark_delivered_refuses_anything_but_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"a")
    spool.append(b"b")
    first = spool.oldest()
    assert first is not None
    spool.mark_delivered(first)
    with pytest.raises(ValueError, match="not the oldest"):
        spool.mark_delivered(first)
    spool.close()


def test_a_second_user_of_the_same_spool_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolError, match=f"in use by another writer \\(pid {os.getpid()}\\)"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_a_closed_spool_refuses_appends(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close()
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.append(b"late")


def test_a_torn_tail_is_cut_off_and_appends_go_on(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"whole one")
    spool.append(b"whole two")
    spool.close()
    segment = _segments(tmp_path)[-1]
    intact = segment.stat().st_size
    with segment.open("ab") as handle:  # a crash in the middle of an append
        handle.write(b"FMS1\x00\x00\x01\x00\x12\x34\x56\x78partial payl")

    reopened = Spool(tmp_path)
    assert segment.stat().st_size == intact
    reopened.append(b"after the crash")
    assert _drain(reopened) == [b"whole one", b"whole two", b"after the crash"]
    reopened.close()


def test_a_zero_filled_tail_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"kept")
    spool.close()
    segment = _segments(tmp_path)[-1]
    with segment.open("ab") as handle:  # what some file systems leave after a crash
        handle.write(bytes(4096))

    reopened = Spool(tmp_path)
    assert _drain(reopened) == [b"kept"]
    reopened.close()


def test_damage_before_the_tail_is_refused_with_file_and_offset(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for payload in (b"one" * 10, b"two" * 10, b"three" * 10):
        spool.append(payload)
    spool.close()
    segment = _segments(tmp_path)[-1]
    data = bytearray(segment.read_bytes())
    second = 12 + 30
    data[second + 12 + 5] ^= 0xFF  # a flipped bit inside the second payload
    segment.write_bytes(bytes(data))

    with pytest.raises(SpoolError, match=f"{segment.name} is damaged at byte {second}"):
        Spool(tmp_path)
    # The refusal released the lock: once the file is moved aside, it opens.
    segment.rename(segment.with_suffix(".damaged"))
    Spool(tmp_path).close()


def test_damage_after_opening_is_caught_by_the_checksum(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"precious rows")
    segment = _segments(tmp_path)[-1]
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0x01
    segment.write_bytes(bytes(data))

    with pytest.raises(SpoolError, match="damaged at byte 0"):
        spool.oldest()
    spool.close()


def test_what_a_killed_process_appended_is_delivered_by_the_next(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from framemeta._spool import Spool
        spool = Spool({str(tmp_path)!r}, segment_bytes=4096)
        for index in range(50):
            spool.append(b"batch %d " % index * 20)
        print("appended", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "appended"
        with pytest.raises(SpoolError, match=f"pid {process.pid}"):
            Spool(tmp_path)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    successor = Spool(tmp_path)
    assert _drain(successor) == [b"batch %d " % index * 20 for index in range(50)]
    successor.close()


def test_a_refused_write_is_an_error_and_leaves_the_spool_usable(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the disk "full" for this process only.
    script = textwrap.dedent(
        f"""
        import resource, signal
        from framemeta import SpoolError
        from framemeta._spool import Spool
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        spool = Spool({str(tmp_path)!r})
        spool.append(b"fits")
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            spool.append(b"x" * 10_000)
        except SpoolError as exc:
            print("refused:", exc)
        spool.append(b"fits too")
        spool.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "refused: cannot write to the spool" in result.stdout

    spool = Spool(tmp_path)
    assert _drain(spool) == [b"fits", b"fits too"]
    spool.close()


@settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
class SpoolModel(RuleBasedStateMachine):
    """Any interleaving of appends, deliveries, reopenings and crashes keeps
    the spool equal to a FIFO of what was appended and not delivered."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.directory = Path(tempfile.mkdtemp(prefix="framemeta-spool-model-"))
        self.spool = Spool(self.directory, segment_bytes=256)
        self.model: collections.deque[bytes] = collections.deque()

    @rule(payload=st.binary(max_size=200))
    def append(self, payload: bytes) -> None:
        self.spool.append(payload)
        self.model.append(payload)

    @rule()
    def deliver(self) -> None:
        entry = self.spool.oldest()
        if not self.model:
            assert entry is None
            return
        assert entry is not None
        assert entry.payload == self.model.popleft()
        self.spool.mark_delivered(entry)

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = Spool(self.directory, segment_bytes=256)

    @rule(garbage=st.binary(min_size=1, max_size=40))
    def crash_mid_append(self, garbage: bytes) -> None:
        self.spool.close()
        segments = _segments(self.directory)
        if segments:
            torn = b"FMS1\x00\x00\x10\x00" + garbage  # claims 4 KiB, has less
            with segments[-1].open("ab") as handle:
                handle.write(torn)
        self.spool = Spool(self.directory, segment_bytes=256)

    @invariant()
    def same_length(self) -> None:
        assert self.spool.pending_batches == len(self.model)

    def teardown(self) -> None:
        self.spool.close()
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()


TestSpoolModel = SpoolModel.TestCase
