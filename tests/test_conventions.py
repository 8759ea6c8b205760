"""Conventions users expect (issue #18): inputs they have (scipy.sparse.save_npz / numpy.savez archives,
anndata .h5ad files), --version / -h, MATCLI_* environment variables for the common options."""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.errors import InputError, ResourceError
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.load import read_matrix


@pytest.fixture
def matrix():
    A = sp.random(40, 25, density=0.2, format="csr", random_state=np.random.default_rng(0))
    A.data -= 0.5
    return A


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_save_npz_formats_read_exactly(tmp_path, matrix, fmt):
    path = tmp_path / "A.npz"
    sp.save_npz(path, matrix.asformat(fmt), compressed=fmt != "coo")
    got = read_matrix(str(path))
    assert sp.issparse(got) and got.format == "csr" and got.dtype == np.float64
    assert (got != matrix).nnz == 0


def test_complex_and_integer_values_and_a_single_dense_array(tmp_path, matrix):
    sp.save_npz(tmp_path / "c.npz", (matrix * (1 + 2j)).astype(np.complex64))
    assert read_matrix(str(tmp_path / "c.npz")).dtype == np.complex128
    sp.save_npz(tmp_path / "i.npz", (matrix * 10).astype(np.int32))
    assert np.array_equal(read_matrix(str(tmp_path / "i.npz")).toarray(), (matrix * 10).astype(np.int32).toarray())
    np.savez(tmp_path / "d.npz", matrix.toarray())
    assert np.array_equal(read_matrix(str(tmp_path / "d.npz")), matrix.toarray())


def _archive(tmp_path, members: dict[str, bytes | np.ndarray], name="bad.npz") -> str:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in members.items():
            if isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, value, allow_pickle=True)
                value = buffer.getvalue()
            archive.writestr(key, value)
    return str(path)


def csr_members(matrix, **replace):
    members = {"format.npy": np.array("csr"), "shape.npy": np.array(matrix.shape), "data.npy": matrix.data,
               "indices.npy": matrix.indices, "indptr.npy": matrix.indptr}
    members.update(replace)
    return members


@pytest.mark.parametrize("change, message", [
    ({"indices.npy": np.full(1, 99, dtype=np.int32)}, "inconsistent|out of range"),
    ({"indptr.npy": np.zeros(3, dtype=np.int32)}, "indptr"),
    ({"format.npy": np.array("dia")}, "not supported"),
    ({"shape.npy": np.array([-1, 5])}, "shape"),
    ({"data.npy": np.array([object()], dtype=object)}, "pickles are refused"),
    ({"data.npy": b"\x93NUMPY garbage"}, "not a readable"),
    ({"notes.txt": b"hello"}, "not a .npy array"),
])
def test_malformed_archives_are_input_errors(tmp_path, matrix, change, message):
    path = _archive(tmp_path, csr_members(matrix, **change))
    with pytest.raises(InputError, match=message) as info:
        read_matrix(path)
    assert str(info.value).startswith(path)


def test_missing_member_and_several_dense_arrays(tmp_path, matrix):
    members = csr_members(matrix)
    del members["indptr.npy"]
    with pytest.raises(InputError, match="lacks member"):
        read_matrix(_archive(tmp_path, members))
    np.savez(tmp_path / "two.npz", a=np.ones(3), b=np.ones(3))
    with pytest.raises(InputError, match="holds 2 arrays"):
        read_matrix(str(tmp_path / "two.npz"))
    (tmp_path / "zip.npz").write_bytes(b"PK not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        read_matrix(str(tmp_path / "zip.npz"))


def test_declared_sizes_are_checked_before_decompressing(tmp_path):
    """A member whose header declares 1e10 entries in a tiny archive: refused from the header."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)})
    path = _archive(tmp_path, {"arr_0.npy": header.getvalue()})
    with pytest.raises(InputError, match="declares shape"):
        read_matrix(path)
    big = np.zeros((2000, 100))
    np.savez_compressed(tmp_path / "big.npz", big)  # ~1.6 MB of zeros, a few KB compressed
    with input_policy(InputPolicy(max_memory=2**20)), pytest.raises(ResourceError, match="memory budget"):
        read_matrix(str(tmp_path / "big.npz"))


def write_h5ad(path, matrix):
    """An anndata-style file: X as a csr_matrix group (float32 values), obs/var dataframes."""
    with h5py.File(path, "w") as fh:
        fh.attrs["encoding-type"] = "anndata"
        group = fh.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array(matrix.shape)
        group["data"] = matrix.data.astype(np.float32)
        group["indices"] = matrix.indices
        group["indptr"] = matrix.indptr
        for name in ("obs", "var"):
            fh.create_group(name).attrs["encoding-type"] = "dataframe"


def test_h5ad_x_reads_as_the_sparse_matrix(tmp_path, matrix, cli):
    path = tmp_path / "cells.h5ad"
    write_h5ad(path, matrix)
    got = read_matrix(f"{path}:/X")
    np.testing.assert_allclose(got.toarray(), matrix.toarray().astype(np.float32), rtol=0, atol=0)
    result = cli(["info", f"{path}:/X"])
    assert result.exit_code == 0, result.stderr
    assert "40" in result.stdout and "25" in result.stdout


def test_version_and_short_help(cli):
    from matcli import __version__

    result = cli(["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"matcli {__version__}"
    assert cli(["-V"]).stdout.strip() == f"matcli {__version__}"
    for args in (["-h"], ["solve", "-h"], ["factorize", "-h"]):
        result = cli(args)
        assert result.exit_code == 0 and result.stdout.startswith("Usage: matcli"), args


def test_package_version_matches_the_distribution():
    import tomllib
    from pathlib import Path

    from matcli import __version__

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__


def test_environment_variables_for_common_options(cli, tmp_path, monkeypatch):
    """MATCLI_THREADS and MATCLI_QUIET stand for --threads and --quiet; a flag given wins."""
    import json

    from matcli import gallery
    from matcli.io.hdf5 import write_arrays

    write_arrays(str(tmp_path / "p.h5"), gallery.poisson_problem((10, 10), np.random.default_rng(0)))
    args = ["solve", f"{tmp_path}/p.h5:/A", "--rhs", f"{tmp_path}/p.h5:/b", "--report", "-"]
    monkeypatch.setenv("MATCLI_THREADS", "1")
    monkeypatch.setenv("MATCLI_QUIET", "1")
    result = cli([*args, "-o", tmp_path / "x.h5"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 1 and result.stderr == ""
    monkeypatch.setenv("MATCLI_QUIET", "0")
    result = cli([*args, "-o", tmp_path / "y.h5", "--threads", "2"])
    assert json.loads(result.stdout)["threads"] == 2 and "status" in result.stderr
    monkeypatch.setenv("MATCLI_THREADS", "many")
    result = cli([*args, "-o", tmp_path / "z.h5"])
    assert result.exit_code == 2 and "MATCLI_THREADS" in result.stderr and len(result.stderr.splitlines()) == 1


def _matcli(args, stdin: bytes, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "matcli", *args], input=stdin, capture_output=True, cwd=cwd,
                          timeout=300)


def test_standard_input_takes_a_matrixmarket_file_plain_or_gzip(tmp_path):
    """'-' reads MatrixMarket from standard input (gzip detected by its magic bytes); the answer is the
    one from the file itself; errors name <stdin>; a second '-' in one run is a usage error."""
    import gzip

    from tests.conftest import data_file

    text = data_file("matrices/494_bus.mtx").read_bytes()
    for name, stdin in (("plain.h5", text), ("gz.h5", gzip.compress(text))):
        run = _matcli(["solve", "-", "--rhs", "ones", "-o", name, "-q"], stdin, tmp_path)
        assert run.returncode == 0, run.stderr
    run = _matcli(["solve", str(data_file("matrices/494_bus.mtx")), "--rhs", "ones", "-o", "file.h5", "-q"], b"",
                  tmp_path)
    assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "plain.h5") as a, h5py.File(tmp_path / "gz.h5") as b, \
            h5py.File(tmp_path / "file.h5") as c:
        assert np.array_equal(a["x"][()], c["x"][()]) and np.array_equal(b["x"][()], c["x"][()])
    for stdin, message in ((b"", "standard input is empty"), (b"1 2 3\n", "MatrixMarket"),
                           (gzip.compress(text)[:200], "gzip stream cut short")):
        run = _matcli(["info", "-"], stdin, tmp_path)
        assert run.returncode == 4 and run.stderr.decode().startswith("matcli: error: <stdin>: "), run.stderr
        assert message in run.stderr.decode() and len(run.stderr.decode().splitlines()) == 1
    run = _matcli(["solve", "-", "--rhs", "-", "-o", "twice.h5"], text, tmp_path)
    assert run.returncode == 2 and "only once" in run.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.h5", "gz.h5", "plain.h5"]


def test_shell_completion(tmp_path):
    """typer's completion: the script for bash, and completions of subcommands and options."""
    import os
    import subprocess
    import sys

    # typer detects the shell from the parent processes (pytest here); its test switch takes it as a value
    script = subprocess.run([sys.executable, "-m", "matcli", "--show-completion", "bash"], capture_output=True,
                            text=True, timeout=120,
                            env=dict(os.environ, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"))
    assert script.returncode == 0 and "_matcli_completion" in script.stdout
    for words, cword, expected in (("matcli fac", "1", "factorize"), ("matcli factorize --ki", "2", "--kind")):
        env = dict(os.environ, _MATCLI_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword)
        done = subprocess.run([sys.executable, "-m", "matcli"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and expected in done.stdout.split(), done


def test_the_same_concept_has_the_same_flag_everywhere(cli, tmp_path):
    """-r/--rank, -m/--method, --rhs/-b, and --rtol/--tol (the method's relative tolerance) mean the same in every
    subcommand that has the concept; the old spellings (-k for complete's rank, sketch-regress's positional b)
    still work."""
    import json

    from matcli import gallery
    from matcli.io.hdf5 import write_arrays

    rng = np.random.default_rng(0)
    write_arrays(str(tmp_path / "p.h5"), gallery.poisson_problem((8, 8), rng))
    A = rng.standard_normal((200, 5))
    write_arrays(str(tmp_path / "r.h5"), {"A": A, "b": A @ np.ones(5)})
    obs = tmp_path / "obs.tsv"
    obs.write_text("".join(f"{i} {j} {((i * j) % 5) + 1}\n" for i in range(1, 30) for j in range(1, 20) if (i + j) % 3))
    runs = {  # name: (arguments, the method it ran, the resolved parameters the flags must have set)
        "solve": (["solve", f"{tmp_path}/p.h5:/A", "-b", f"{tmp_path}/p.h5:/b", "-m", "cg", "--tol", "1e-9"],
                  "cg", {"rtol": 1e-9, "rhs": f"{tmp_path}/p.h5:/b"}),
        "sketch -b": (["sketch-regress", f"{tmp_path}/r.h5:/A", "-b", f"{tmp_path}/r.h5:/b", "-m", "precondition",
                       "--tol", "1e-12"], "precondition", {"rtol": 1e-12}),
        "sketch positional": (["sketch-regress", f"{tmp_path}/r.h5:/A", f"{tmp_path}/r.h5:/b", "--method", "refine",
                               "--rtol", "1e-11"], "refine", {"rtol": 1e-11}),
        "complete -r": (["complete", obs, "-r", "2", "--reg", "0.1", "-m", "als", "--rtol", "1e-3"], "als",
                        {"rank": 2, "rtol": 1e-3}),
        "complete -k": (["complete", obs, "-k", "3", "--reg", "0.1", "-m", "als", "--tol", "2e-3"], "als",
                        {"rank": 3, "rtol": 2e-3}),
        "factorize": (["factorize", f"{tmp_path}/r.h5:/A", "-k", "svd", "-m", "lanczos", "-r", "2", "--rtol", "1e-9"],
                      "svd-lanczos", {"rank": 2, "tol": 1e-9}),
    }
    for name, (args, method, params) in runs.items():
        result = cli([*args, "-o", tmp_path / f"{name.replace(' ', '_')}.h5", "--quiet", "--report", "-"])
        assert result.exit_code == 0, (name, result.stderr)
        report = json.loads(result.stdout)
        assert report["method"] == method, name
        assert {key: report["params"][key] for key in params} == params, name
    result = cli(["sketch-regress", f"{tmp_path}/r.h5:/A", "-o", tmp_path / "none.h5"])
    assert result.exit_code == 2 and "right-hand side" in result.stderr


def test_progress_on_a_terminal_and_a_signal_leave_the_terminal_usable(tmp_path):
    """On a terminal the progress line shows the method and the residual against --rtol; SIGINT in the
    middle ends with the one line, after clearing the progress line and showing the cursor again
    (the display hides it and gets no chance to restore it)."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    from matcli import gallery
    from matcli.io.hdf5 import write_arrays

    write_arrays(str(tmp_path / "p.h5"), {"A": gallery.poisson((300, 300))})
    master, slave = pty.openpty()
    run = subprocess.Popen([sys.executable, "-m", "matcli", "solve", f"{tmp_path}/p.h5:/A", "--rhs", "ones", "-m",
                            "cg", "--precond", "none", "--rtol", "1e-14", "--maxiter", "100000000", "-o",
                            tmp_path / "x.h5"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while b"-> 1e-14" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 1.0)[0]:
            seen += os.read(master, 65536)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert b"solve cg: compute" in seen and b"-> 1e-14" in seen
    hidden, shown = seen.rfind(b"\x1b[?25l"), seen.rfind(b"\x1b[?25h")
    assert hidden >= 0 and shown > hidden
    assert seen.rstrip().endswith(b"matcli: stopped by SIGINT; no output was published")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]
