"""glibc's malloc and large pictures: give the memory of a freed large block back at once.

glibc serves a request of at least its mmap threshold with a mapping of its own, unmapped when
freed; but the threshold is dynamic: after a freed 16 MB mapping (one of Pillow's image blocks)
it rises to 16 MB, and the next pictures' blocks come from the heap arenas, where each request
thread's arena keeps them after they are freed. Decodes of large images in turn on different
threads then add up in RSS even though the decode budget (labeling.services.ingest) lets only
one run at a time (bench/memory.py: 4 x 49 MP PNGs in one upload, 673 MB). A fixed threshold
keeps every block of 4 MB or more on its own mapping; smaller allocations are unaffected.
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
LARGE_BLOCK_BYTES = 4 * 1024 * 1024


def return_large_frees_to_the_os() -> bool:
    """Fix glibc's mmap threshold at LARGE_BLOCK_BYTES in this process; False where the C
    library is not glibc or the operator chose a threshold (MALLOC_MMAP_THRESHOLD_)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # A fixed mmap threshold also freezes the trim threshold at its 128 kB default, and the heap
    # would then be given back and faulted in again around every small decode (measured: a
    # 640 x 480 JPEG's decode 1.4 -> 2.2 ms). Twice the mmap threshold is what glibc's dynamic
    # rule would have set.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, 2 * LARGE_BLOCK_BYTES)
    )
