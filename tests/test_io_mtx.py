"""MatrixMarket reading: every valid variant reads (and round-trips), every invalid one is refused."""

from __future__ import annotations

import gzip
import re
import shutil

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.hdf5 import write_arrays
from matcli.io.load import read_matrix
from matcli.io.mtx import read_mtx
from matcli.io.writers import write_mtx_file
from tests.conftest import shared_data_dir

VARIANTS = shared_data_dir() / "format-variants"
# A hermitian file whose diagonal is not real (entry (2, 2) is 1.707 - 1i) describes no hermitian
# matrix: it is refused (#16) although SuiteSparse keeps it among its CHOLMOD test inputs.
REFUSED_VARIANTS = {"ss_cha.mtx": "line 6: diagonal entry (2, 2) has imaginary part -1"}
VALID = sorted(p for p in VARIANTS.glob("*.mtx") if p.name not in REFUSED_VARIANTS)
INVALID = sorted((VARIANTS / "invalid").glob("*.mtx"))
# Files in invalid/ that the MatrixMarket format in fact allows: an index above 127 (int8 overflow
# is a concern only for readers storing int8) and an integer above 2^31 (stored exactly in float64).
ACCEPTED_OVERFLOW = {"fmm_overflow_index_gt_int8.mtx", "fmm_overflow_value_gt_int32.mtx"}


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_variant_round_trips_through_mtx_and_hdf5(path, tmp_path):
    original = read_mtx(str(path), finite=False)
    assert original.ndim == 2
    out_mtx = tmp_path / "copy.mtx"
    write_mtx_file(str(out_mtx), "mtx", original)
    np.testing.assert_array_equal(dense(read_mtx(str(out_mtx), finite=False)), dense(original))
    if np.isfinite(dense(original)).all():
        out_h5 = tmp_path / "copy.h5"
        write_arrays(str(out_h5), {"A": original})
        np.testing.assert_array_equal(dense(read_matrix(f"{out_h5}:/A")), dense(original))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_variant_matches_scipy_where_scipy_reads_it(path):
    try:
        reference = scipy.io.mmread(str(path))
    except ValueError:
        pytest.skip("scipy.io.mmread rejects this valid file; covered by explicit expectations")
    np.testing.assert_array_equal(dense(read_mtx(str(path), finite=False)), dense(reference).astype(
        np.complex128 if np.iscomplexobj(dense(reference)) else np.float64))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ss_fullrsa.mtx", [[1.3, 3.4], [3.4, 7.7]]),
        ("ss_fullcsa.mtx", [[1.3 + 2.3j, 3.4 + 1.7j], [3.4 + 1.7j, 7.7 + 8.0j]]),
        ("fmm_vector_array.mtx", [[101.0], [202.0], [0.0], [404.0]]),
        ("fmm_vector_coordinate.mtx", [[101.0], [202.0], [0.0], [404.0]]),
        ("fmm_array_skew-symmetric.mtx", None),
    ],
)
def test_files_scipy_rejects_read_to_known_values(name, expected):
    got = dense(read_mtx(str(VARIANTS / name)))
    if expected is None:
        np.testing.assert_array_equal(got, -got.T)
    else:
        np.testing.assert_array_equal(got, np.array(expected))


def test_jumbled_file_with_blank_and_comment_lines_equals_ordered_original():
    jumbled = read_mtx(str(VARIANTS / "ss_west0067_jumbled.mtx"))
    ordered = read_mtx(str(shared_data_dir() / "matrices" / "west0067.mtx"))
    assert jumbled.shape == (67, 67)
    np.testing.assert_allclose(dense(jumbled), dense(ordered), rtol=1e-6, atol=0)


def test_symmetric_storage_is_expanded():
    A = read_mtx(str(VARIANTS / "fmm_coordinate_symmetric_row.mtx"))
    G = read_mtx(str(VARIANTS / "fmm_coordinate_symmetric_row_general.mtx"))
    np.testing.assert_array_equal(dense(A), dense(G))
    np.testing.assert_array_equal(dense(A), dense(A).T)


def test_gzip_file_reads_like_plain(tmp_path):
    src = VARIANTS / "fmm_nist_ex1.mtx"
    gz = tmp_path / "nist.mtx.gz"
    with open(src, "rb") as fin, gzip.open(gz, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    np.testing.assert_array_equal(dense(read_matrix(str(gz))), dense(read_mtx(str(src))))


def test_nan_in_valid_file_is_an_input_error_for_computation():
    with pytest.raises(InputError, match="line 4: value 'inf' is NaN, Inf or overflows float64"):
        read_mtx(str(VARIANTS / "ss_skew_fp64.mtx"))


@pytest.mark.parametrize("name", sorted(REFUSED_VARIANTS))
def test_variant_that_breaks_its_own_symmetry_is_refused(name):
    with pytest.raises(InputError, match=re.escape(REFUSED_VARIANTS[name])):
        read_mtx(str(VARIANTS / name))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file_is_refused_with_file_name(path):
    if path.name in ACCEPTED_OVERFLOW:
        assert read_mtx(str(path)).shape[0] > 0
        return
    with pytest.raises(InputError) as err:
        read_matrix(str(path))
    message = str(err.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    assert len(err.value.defect) > 10


def test_small_pieces_give_the_same_entries_and_line_numbers(tmp_path):
    """Piece boundaries fall inside lines, comments and blank runs; entries and lines do not change."""
    from matcli.io.mtx import read_declared
    from matcli.io.mtx_body import read_entries
    from matcli.io.mtx_source import LineSource

    lines = [b"%%MatrixMarket matrix coordinate real general", b"% c", b"40 40 60"]
    for k in range(60):
        lines += [b"%d %d %d.5" % (k % 40 + 1, k // 2 + 1, k)] + ([b"", b"% note"] if k % 7 == 0 else [])
    path = tmp_path / "pieces.mtx"
    path.write_bytes(b"\n".join(lines))

    def entries(piece_bytes):
        with LineSource(str(path), piece_bytes=piece_bytes, max_line=64) as source:
            declared = read_declared(str(path), source)
            return read_entries(source, declared.layout, declared.count, declared.shape)

    whole = entries(2**20)
    for piece_bytes in (1, 7, 64, 300):
        pieces = entries(piece_bytes)
        for name in ("i0", "i1", "v0"):
            np.testing.assert_array_equal(pieces[name], whole[name])
    assert whole["v0"][-1] == 59.5 and whole["i1"][-1] == 29
    bad = lines.copy()
    bad[-1] = b"1 1 1e5e3"
    path.write_bytes(b"\n".join(bad))
    for piece_bytes in (1, 7, 64):
        with pytest.raises(InputError, match=f"line {len(bad)}: value '1e5e3' is not a real number"):
            entries(piece_bytes)
