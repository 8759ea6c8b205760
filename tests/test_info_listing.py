"""``matcli info file.h5``: every member with what it is to matcli, metadata only, links not followed."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.io.writers import write_result
from tests.conftest import run_cli


@pytest.fixture
def mixed(tmp_path):
    """One file with one member of each kind, plus links that must not be followed."""
    path = tmp_path / "mixed.h5"
    A = sp.random(30, 20, density=0.2, random_state=1, format="csr")
    write_result(str(path), str(path), {"A": A, "dense": np.ones((4, 3)), "b": np.ones(30)}, {}, "test")
    (tmp_path / "other.h5").write_bytes(b"")
    with h5py.File(path, "a") as fh:
        obs = fh.create_group("ratings")
        obs.attrs["shape"] = (5, 6)
        for name, values in (("row", [0, 1]), ("col", [2, 3]), ("value", [4.0, 5.0])):
            obs.create_dataset(name, data=np.asarray(values))
        batch = fh.create_group("systems")
        for k in range(2):
            batch.create_group(f"s{k}").create_dataset("A", data=np.eye(3))
        fh["alias"] = h5py.SoftLink("/dense")
        fh["loop"] = h5py.SoftLink("/loop")
        fh["elsewhere"] = h5py.ExternalLink("/etc/passwd", "/x")
        fh.create_dataset("label", data="text")
    return path


def test_every_member_is_listed_with_its_kind_and_use(mixed):
    result = run_cli(["info", mixed, "--json"])
    assert result.exit_code == 0, result.stderr
    listing = {m["path"]: m for m in json.loads(result.stdout)["members"]}
    assert listing["/A"]["kind"] == "sparse matrix (csr_matrix)" and listing["/A"]["shape"] == [30, 20]
    assert listing["/A"]["nnz"] == sp.random(30, 20, density=0.2, random_state=1, format="csr").nnz
    assert "/A/data" not in listing  # parts of the sparse matrix are not members of their own
    assert listing["/dense"]["kind"] == "dense matrix" and listing["/dense"]["shape"] == [4, 3]
    assert listing["/b"]["kind"] == "vector"
    assert listing["/ratings"]["kind"] == "observed entries" and listing["/ratings"]["nnz"] == 2
    assert listing["/systems"]["kind"] == "batch" and listing["/systems"]["systems"] == 2
    assert listing["/systems/s0/A"]["kind"] == "dense matrix"
    assert listing["/alias"] == {"path": "/alias", "kind": "soft link", "target": "/dense",
                                 "use": "read through its target"}
    assert listing["/loop"]["kind"] == "soft link"  # not followed: no loop
    assert listing["/elsewhere"]["kind"] == "external link" and "passwd" in listing["/elsewhere"]["target"]
    assert listing["/label"]["kind"] == "dataset"


def test_a_matcli_output_says_what_made_it_and_what_to_do_with_it(tmp_path):
    run = run_cli(["generate", "lowrank", "--rows", "40", "--cols", "30", "-o", tmp_path / "l.h5", "-q"])
    assert run.exit_code == 0
    svd = run_cli(["factorize", f"{tmp_path}/l.h5:/A", "--kind", "svd", "--rank", "3", "--seed", "1",
                   "-o", tmp_path / "s.h5", "-q"])
    assert svd.exit_code == 0, svd.stderr
    result = run_cli(["info", tmp_path / "s.h5"])
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert "matcli output of factorize" in first and "converged" in first and "factorize --update" in first
    report = run_cli(["info", tmp_path / "s.h5", "--report", tmp_path / "i.json", "-q"])
    assert report.exit_code == 0 and report.stdout == ""
    facts = json.loads((tmp_path / "i.json").read_text())
    assert facts["file"]["family"] == "factorize" and {m["path"] for m in facts["members"]} == {"/U", "/s", "/Vt"}


def test_not_an_hdf5_file_is_one_input_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    result = run_cli(["info", bad])
    assert result.exit_code == 4 and len(result.stderr.strip().splitlines()) == 1 and "bad.h5" in result.stderr
