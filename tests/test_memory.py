"""The command line caps glibc's malloc arenas (each allocating thread would otherwise get
one, and keep what was freed into it): checked on the allocator itself, in a fresh
process, through glibc's own report of its heaps."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from stacpull.cli import run
    if sys.argv[1] == "cap":
        run.fewer_malloc_arenas()
    barrier = threading.Barrier(8)

    def allocate():
        held = [bytearray(4096) for _ in range(64)]  # malloc'd (above pymalloc's 512 B)
        barrier.wait()  # all eight threads hold memory at once
        del held

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print(open(f.name).read().count("<heap nr="))
    """
)


def _heaps(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_command_line_keeps_two_malloc_arenas() -> None:
    assert _heaps("default") > 2  # the control: eight threads, eight more arenas
    assert _heaps("cap") <= 2
