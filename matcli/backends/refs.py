"""Inputs by reference: what a task names instead of carrying the data.

A parallel backend sends each task's arguments through its scheduler, which keeps them so that it
can recompute the task when the worker running it is lost. Problem data stay out of those
arguments: a task carries a :class:`FileInput` (the input spec with its path made absolute, the
reader, the reader's options, and a digest of the array this process read) and the worker reads the
file itself, under the run's input policy (memory budget, external links), which travels with it.

This assumes that the workers see the files under the same paths as this process (a shared
filesystem). The digest makes the assumption checked rather than trusted: a worker that reads other
values (another file under that path on its machine, or a file changed since this process read it)
raises :class:`~matcli.core.errors.InputError` naming the file; it never computes a different answer.

Inputs no worker can read (arrays handed to the Python API, standard input) travel by value
(:class:`Inline`), still as task arguments, so they too survive a lost worker.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.guard import InputPolicy

#: Inputs a worker keeps after reading them (the latest ones), so the tasks of one job that need
#: the same input on the same worker read it once. :func:`clear_cache` empties it at the end of a job.
CACHE_ENTRIES = 2
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_LOCK = threading.Lock()


def digest(value: Any) -> str:
    """A content digest of an array, a ``scipy.sparse`` matrix, or a tuple of them (BLAKE2b-128 of the
    shapes, dtypes, storage format and bytes)."""
    h = hashlib.blake2b(digest_size=16)

    def add(part: Any) -> None:
        if isinstance(part, (tuple, list)):
            h.update(f"seq{len(part)}".encode())
            for item in part:
                add(item)
        elif sp.issparse(part):
            h.update(f"sparse {part.format} {part.shape}".encode())
            for name in ("data", "indices", "indptr", "row", "col", "offsets"):
                if hasattr(part, name):
                    add(np.asarray(getattr(part, name)))
        elif part is None or isinstance(part, (int, float, str)):
            h.update(repr(part).encode())
        else:
            array = np.ascontiguousarray(part)
            h.update(f"dense {array.dtype.str} {array.shape}".encode())
            h.update(memoryview(array.reshape(-1)).cast("B"))

    add(value)
    return h.hexdigest()


@dataclass(frozen=True)
class FileInput:
    """An input a worker reads itself: ``spec`` (absolute path), ``reader`` (a module-level function
    ``reader(spec, *options)``), ``convert`` (None, or a module-level function applied to what the
    reader returns, as this process applied it), the :func:`digest` of the converted value
    (computed by ``content`` from it) and the input ``policy`` of the run the reference was made in."""

    spec: str
    reader: Callable[..., Any]
    options: tuple[Any, ...]
    convert: Callable[[Any], Any] | None
    content: Callable[[Any], Any] | None
    digest: str
    policy: InputPolicy

    def load(self) -> Any:
        """Read (or take from this worker's cache) the value this process read; InputError when the
        file is missing here or holds other values. The value may be shared with the job's other
        tasks on this worker: callers must not modify it in place."""
        key = (self.spec, self.digest)
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        from matcli.io.guard import input_policy
        from matcli.io.spec import parse_spec

        path = parse_spec(self.spec).path
        if not os.path.exists(path):
            raise InputError(path, f"not found on Dask worker host {socket.gethostname()}: workers read their inputs "
                                   "themselves, so they must see the files under the same paths as the client "
                                   "(a shared filesystem; see docs/dask.md)")
        with input_policy(self.policy):
            value = self.reader(self.spec, *self.options)
        if self.convert is not None:
            value = self.convert(value)
        if digest(self.content(value) if self.content is not None else value) != self.digest:
            raise InputError(path, f"Dask worker host {socket.gethostname()} read other values from this file than "
                                   "the client did: the file changed during the run, or the worker sees a different "
                                   "file under this path (workers need the client's files on a shared filesystem)")
        with _CACHE_LOCK:
            while len(_CACHE) >= CACHE_ENTRIES:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = value
        return value


@dataclass(frozen=True)
class Inline:
    """An input sent by value (an array of the Python API, standard input)."""

    value: Any

    def load(self) -> Any:
        return self.value


def reference(spec: str, value: Any, reader: Callable[..., Any], options: tuple[Any, ...] = (),
              convert: Callable[[Any], Any] | None = None,
              content: Callable[[Any], Any] | None = None) -> FileInput | Inline:
    """How a task names ``value``, which this process got as ``convert(reader(spec, *options))``.

    A file becomes a :class:`FileInput` with its path made absolute (workers need not share this
    process's working directory); an array spec of the Python API or ``-`` (standard input)
    becomes :class:`Inline`. ``content`` picks what the digest covers (default: the value). The
    run's input policy goes with it, its budget resolved here (a worker applies this run's
    ``--max-memory``, not its own default).
    """
    from matcli.io.guard import current_policy
    from matcli.io.in_memory import is_array_spec
    from matcli.io.spec import Spec, parse_spec

    if spec == "-" or is_array_spec(spec):
        return Inline(value)
    parsed = parse_spec(spec)
    absolute = str(Spec(os.path.abspath(parsed.path), parsed.internal))
    policy = current_policy()
    return FileInput(absolute, reader, tuple(options), convert, content,
                     digest(content(value) if content is not None else value),
                     InputPolicy(max_memory=policy.budget, allow_external=policy.allow_external))


def clear_cache() -> int:
    """Empty this process's cache of inputs read by reference; return how many entries it held."""
    with _CACHE_LOCK:
        count = len(_CACHE)
        _CACHE.clear()
    return count
