"""At most two malloc arenas in a process that runs the drain's threads.

glibc gives a thread that allocates while another holds the main heap an arena of its own,
up to eight per core, and an arena keeps the pages it has touched. A Sync All runs a dozen
threads (writers, request lanes, image fetchers, the listing, the collection orderers), and
every request allocates its query string and its answer with malloc: at 20,000 scenes those
arenas were 4.5 MiB of the plugin's peak (VmHWM 79,864 KiB against 75,388 KiB with two),
over the 80 MB the plugin is allowed. Two cost no speed: the GIL already lets one thread
allocate at a time. `mallopt(M_ARENA_MAX)` is glibc's own knob (mallopt(3)); where the C
library has none (musl, as in Stash's Docker image, macOS, Windows) nothing changes.
"""

from __future__ import annotations

#: mallopt(3)'s parameter number for the arena limit (glibc's malloc.h).
M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Limit the process to `arenas` malloc arenas, before its threads start; whether the C
    library took the limit."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
