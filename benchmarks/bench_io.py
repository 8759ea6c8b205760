"""Reading MatrixMarket and text files: matcli's strict readers beside the C readers they build on.

Target: every valid file in no more than 1.5x the time of its C peer (ratio = peer / matcli >= 0.67).
Peers: ``scipy.io.mmread`` (scipy's bundled fast_matrix_market), the ``fast_matrix_market`` package
when installed, and ``numpy.loadtxt`` for text. matcli returns CSR with duplicates summed and sorted
indices where the peers return COO triplets, so coordinate files also get the peer
``scipy.io.mmread(...).tocsr()`` (the same object). Neither peer reads comment lines inside the data,
so the file with comments in its body is compared with the peer reading the same file without them.

Every workload is timed in one interleaved run (round after round, each reader in turn), so a load
change on the machine hits matcli and its peers alike; the best time of the rounds is reported,
and each answer is compared with the peer's exactly. ``--before REV`` adds matcli's readers as they
were at git revision REV to the same rounds (their modules loaded beside today's under another
package name), for a before/after table.
"""

from __future__ import annotations

import atexit
import gzip
import importlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.io
import scipy.sparse as sp

from _common import BENCH_DIR, Row, report, size_from_argv, work_dir

sys.path.insert(0, str(BENCH_DIR.parent))

from matcli.io.mtx import read_mtx  # noqa: E402
from matcli.io.text import read_text_array  # noqa: E402

try:
    import fast_matrix_market
except ImportError:  # the package is optional; scipy bundles the same reader
    fast_matrix_market = None

TARGET = ">= 0.67x (<= 1.5x peer time)"
#: The reader modules a revision is loaded with (they import each other; the rest of matcli is today's).
READER_MODULES = ("mtx", "mtx_body", "mtx_build", "mtx_fast", "mtx_grammar", "mtx_source", "text")
#: The symmetric SuiteSparse matrix read from the shared data, when it is there.
SUITESPARSE = "matrices/bcsstk16.mtx"


def shared_data_dir() -> Path | None:
    for candidate in (BENCH_DIR.parent.parent / "shared" / "data", BENCH_DIR.parent / "tests" / "data"):
        if (candidate / "MANIFEST.tsv").is_file():
            return candidate
    return None


def make_files(folder: Path, n: int) -> dict[str, Path]:
    """The workloads' files (written once per size, deterministic)."""
    rng = np.random.default_rng(0)
    files = {name: folder / name for name in ("vector_array.mtx", "vector_coordinate.mtx", "sparse.mtx",
                                              "sparse.mtx.gz", "sparse_comments.mtx", "sparse_crlf.mtx", "b.txt")}
    if all(path.exists() for path in files.values()):
        return files
    vector = rng.standard_normal((n, 1))
    scipy.io.mmwrite(files["vector_array.mtx"], vector)
    scipy.io.mmwrite(files["vector_coordinate.mtx"], sp.coo_matrix(vector))
    side = n // 10
    matrix = sp.coo_matrix((rng.standard_normal(n), (rng.integers(0, side, n), rng.integers(0, side, n))),
                           shape=(side, side))
    scipy.io.mmwrite(files["sparse.mtx"], matrix)
    with open(files["sparse.mtx"], "rb") as plain, gzip.open(files["sparse.mtx.gz"], "wb") as packed:
        shutil.copyfileobj(plain, packed)
    lines = files["sparse.mtx"].read_bytes().split(b"\n")
    header, body = lines[:3], lines[3:]
    commented = header + [line for k, line in enumerate(body)
                          for line in ((line, b"% a comment line inside the data") if k % 1000 == 999 else (line,))]
    files["sparse_comments.mtx"].write_bytes(b"\n".join(commented))
    files["sparse_crlf.mtx"].write_bytes(b"\r\n".join(lines))
    np.savetxt(files["b.txt"], vector[:, 0])
    return files


def same(ours: Any, theirs: Any) -> str:
    """'exact' when both readers give the same matrix, else the largest difference."""
    if sp.issparse(theirs):
        theirs = sp.csr_matrix(theirs)
        theirs.sum_duplicates()
        ours = sp.csr_matrix(ours)
        if ours.shape != theirs.shape:
            return f"shape {ours.shape} vs {theirs.shape}"
        diff = abs(ours - theirs).max() if ours.nnz or theirs.nnz else 0.0
    else:
        ours, theirs = np.asarray(ours).ravel(), np.asarray(theirs).ravel()
        if ours.shape != theirs.shape:
            return f"shape {ours.shape} vs {theirs.shape}"
        diff = np.max(np.abs(ours - theirs), initial=0.0)
    return "exact" if diff == 0 else f"max diff {diff:.2e}"


def readers_at(revision: str):
    """(read_mtx, read_text_array) of matcli at git ``revision``, importable beside today's readers."""
    root = Path(tempfile.mkdtemp(prefix="matcli_readers_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    package = root / "matcli_before"
    package.mkdir()
    (package / "__init__.py").write_text("")
    names = "|".join(READER_MODULES)
    for name in READER_MODULES:
        source = subprocess.run(["git", "show", f"{revision}:matcli/io/{name}.py"], cwd=BENCH_DIR.parent,
                                capture_output=True, text=True, check=True).stdout
        source = re.sub(rf"matcli\.io\.({names})\b", r"matcli_before.\1", source)
        source = re.sub(rf"from matcli\.io import ({names})\b", r"from matcli_before import \1", source)
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(root))
    return (importlib.import_module("matcli_before.mtx").read_mtx,
            importlib.import_module("matcli_before.text").read_text_array)


Reader = Callable[[], Any]


def workloads(files: dict[str, Path], data: Path | None, before) -> list[tuple[str, list[tuple[str, Reader]], list[tuple[str, Reader]]]]:
    """(name, [(matcli version, reader)], [(peer name, peer reader)]) of every workload."""

    def mtx(path: Path, coordinate: bool, peer_path: Path | None = None):
        source = str(peer_path or path)
        peers = [("scipy.io.mmread", lambda: scipy.io.mmread(source))]
        if coordinate:
            peers.append(("scipy.io.mmread().tocsr()", lambda: scipy.io.mmread(source).tocsr()))
        if fast_matrix_market is not None:
            peers.append(("fast_matrix_market.mmread", lambda: fast_matrix_market.mmread(source)))
        ours = [("matcli", lambda: read_mtx(str(path)))]
        if before:
            ours.append(("before", lambda: before[0](str(path))))
        return ours, peers

    rows = [
        ("1e6 vector, array (dense)", *mtx(files["vector_array.mtx"], False)),
        ("1e6 vector, coordinate", *mtx(files["vector_coordinate.mtx"], True)),
        ("1e6-nnz sparse general", *mtx(files["sparse.mtx"], True)),
        ("1e6-nnz sparse general .gz", *mtx(files["sparse.mtx.gz"], True)),
        ("1e6-nnz sparse, a comment line per 1000 (peer: same file without)",
         *mtx(files["sparse_comments.mtx"], True, files["sparse.mtx"])),
        ("1e6-nnz sparse, CRLF line ends", *mtx(files["sparse_crlf.mtx"], True)),
    ]
    if data is not None and (data / SUITESPARSE).is_file():
        rows.append((f"{Path(SUITESPARSE).stem} (SuiteSparse, symmetric)", *mtx(data / SUITESPARSE, True)))
    text = str(files["b.txt"])
    ours = [("matcli", lambda: read_text_array(text))] + ([("before", lambda: before[1](text))] if before else [])
    rows.append(("1e6-line text vector", ours, [("numpy.loadtxt", lambda: np.loadtxt(text))]))
    return rows


def main() -> None:
    size = size_from_argv()
    n, rounds = (10**6, 5) if size == "quick" else (4 * 10**6, 7)
    revision = sys.argv[sys.argv.index("--before") + 1] if "--before" in sys.argv else None
    files = make_files(work_dir(f"io_{n}"), n)
    cases = workloads(files, shared_data_dir(), readers_at(revision) if revision else None)
    best: dict[tuple[str, str], float] = {}
    accuracy: dict[tuple[str, str], str] = {}
    for round_number in range(rounds):
        for name, ours, peers in cases:
            answers = {}
            for who, reader in ours + peers:
                elapsed, answers[who] = _timed(reader)
                best[name, who] = min(best.get((name, who), np.inf), elapsed)
            if round_number == 0:
                for who, _ in ours[1:] + peers:
                    accuracy[name, who] = same(answers["matcli"], answers[who])
    rows = []
    for name, ours, peers in cases:
        for who, _ in peers:
            extra = {"before_seconds": best[name, "before"], "before_ratio": best[name, who] / best[name, "before"],
                     "before_accuracy": accuracy[name, "before"], "before_revision": revision} if revision else {}
            rows.append(Row(name, who, best[name, who], best[name, "matcli"], "reference", accuracy[name, who],
                            TARGET, extra))
    report("io", rows, size)
    if revision:
        print(f"\nbefore ({revision}) / after, ratio = peer time / matcli time:")
        for row in rows:
            print(f"  {row.workload[:40]:40s}  {row.peer:27s}  before {row.extra['before_seconds']:.3f} s "
                  f"({row.extra['before_ratio']:.2f}x)  after {row.matcli_seconds:.3f} s ({row.ratio:.2f}x)  "
                  f"before==after: {row.extra['before_accuracy']}")


def _timed(reader: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = reader()
    return time.perf_counter() - start, value


if __name__ == "__main__":
    main()
