"""The process's memory budget: parsing ``--max-memory`` and reading what the machine has free.

One budget bounds everything a run allocates: readers check a file's declared sizes against it
before allocating (:mod:`matcli.io.guard`), and ``sketch-regress`` shares it out between A, the
sketch and the iteration's vectors (:mod:`matcli.methods.sketch.memory`).
"""

from __future__ import annotations

import os
import re

from matcli.core.errors import UsageError

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
#: Used where /proc/meminfo cannot be read (not Linux).
FALLBACK_AVAILABLE = 8 * 2**30


def parse_memory(text: str, flag: str = "--max-memory") -> int:
    """Bytes from ``500M``, ``2G``, ``1.5G``, ``800K``, ``123456`` (binary units); UsageError otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise UsageError(f"{flag} {text!r}: expected a size such as 500M or 2G")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value < 1024:
        raise UsageError(f"{flag} {text!r}: must be at least 1K")
    return int(value)


def proc_kib(path: str, key: str) -> int | None:
    """Bytes of the ``key:  N kB`` line of a /proc file (``/proc/meminfo``, ``/proc/self/status``);
    None where the file or the line is missing (not Linux)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return None


def available_memory() -> int:
    """Bytes the kernel reports as available to new allocations (``MemAvailable``)."""
    available = proc_kib("/proc/meminfo", "MemAvailable")
    return FALLBACK_AVAILABLE if available is None else available


def default_budget() -> int:
    """Half the available memory: room for the answer's own arrays beside what was read."""
    return available_memory() // 2


def resolve_budget(text: str | None) -> int:
    """``--max-memory`` if given, else ``$MATCLI_MAX_MEMORY``, else :func:`default_budget`."""
    if text:
        return parse_memory(text)
    env = os.environ.get("MATCLI_MAX_MEMORY")
    if env:
        return parse_memory(env, "MATCLI_MAX_MEMORY")
    return default_budget()


def mib(nbytes: float) -> str:
    """``123.4 MiB``."""
    return f"{nbytes / 2**20:.1f} MiB"
