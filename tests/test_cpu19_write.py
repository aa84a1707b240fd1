"""Issue 19's per-file CPU work (helper cpu19): the cheaper paths keep their behaviour.

Each test pins what a CPU saving must not change: the bytes a write lands, the lines the
outcome log writes, the events a sink sees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stacpull.transfer.partfile import write_blocks


def _spy_pwritev(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes each ``os.pwritev`` call is asked to write (the call still happens)."""
    spans: list[int] = []
    real = os.pwritev

    def pwritev(fd: int, buffers: list[memoryview], offset: int) -> int:
        spans.append(sum(map(len, buffers)))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    return spans


def test_write_blocks_spans_at_most_one_mebibyte_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 4 MiB batch of socket-sized chunks, one 3 MiB chunk among them: every pwritev
    # carries at most 1 MiB (larger calls cost this kernel several times the system CPU
    # per byte: see write_blocks), and the file holds exactly the blocks, in order.
    spans = _spy_pwritev(monkeypatch)
    blocks = [bytes([i % 251]) * (65536 + 17 * i) for i in range(40)]
    blocks.insert(7, b"\x07" * (3 << 20))
    path = tmp_path / "f.part"
    path.write_bytes(b"H" * 10)
    fd = os.open(path, os.O_WRONLY)
    try:
        write_blocks(fd, blocks, 10)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"H" * 10 + b"".join(blocks)
    assert spans and max(spans) <= 1 << 20
    assert sum(spans) == sum(map(len, blocks))


def test_write_blocks_short_writes_resume_inside_a_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel that writes less than asked (a signal, a full quota's edge): the rest of
    # the cut block goes next, and no byte is written twice or skipped.
    real = os.pwritev

    def short(fd: int, buffers: list[memoryview], offset: int) -> int:
        first = buffers[0]
        return real(fd, [first[: max(1, len(first) // 3)]], offset)

    monkeypatch.setattr(os, "pwritev", short)
    blocks = [bytes([i]) * (1000 + i) for i in range(1, 30)]
    path = tmp_path / "g.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_blocks(fd, blocks, 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(blocks)
