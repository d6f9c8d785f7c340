"""Giving the C heap's free memory back to the system after RPCs that churn through it.

glibc keeps what a thread frees in that thread's malloc arena for reuse, and gives memory
back only from the top of an arena, past a threshold it raises as large blocks come and go.
A pull streams 1 MiB chunks through its download threads and leaves megabytes of free but
resident memory in their arenas, which an idle daemon never uses again (3.5 MB of VmRSS after
one small pull). `malloc_trim` hands the free pages back in well under a millisecond, next to
a pull's hundreds.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_malloc_trim: Callable[[int], int] | None
try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
    _malloc_trim.restype = ctypes.c_int
except AttributeError:  # not glibc (musl has no malloc_trim): nothing to hand back this way
    _malloc_trim = None


def release_free_heap() -> None:
    """Return the free pages of every malloc arena to the system."""
    if _malloc_trim is not None:
        _malloc_trim(0)
