"""Ratings triplets (MovieLens style), id maps, and observed entries from every format."""

from __future__ import annotations

import numpy as np
import pytest

from matcli.core.errors import InputError, ResourceError
from matcli.io import triplets
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.hdf5 import write_arrays
from matcli.io.ids import IdAxis
from matcli.io.load import read_observed
from matcli.io.triplets import line_of_entry, read_pairs, read_triplets, write_triplets
from tests.conftest import data_file


def test_movielens_split_reads_all_ratings_in_the_1_based_id_space():
    path = data_file("ml-100k/u1.base")
    obs = read_observed(str(path))
    raw = np.loadtxt(path, dtype=np.int64)
    assert obs.nnz == raw.shape[0] == 80000
    np.testing.assert_array_equal(obs.rows, raw[:, 0] - 1)
    np.testing.assert_array_equal(obs.cols, raw[:, 1] - 1)
    np.testing.assert_array_equal(obs.values, raw[:, 2])
    # 1650 of the 1682 items are rated: the id space is dense enough to keep.
    assert obs.shape == obs.id_space == (943, 1682)
    assert not obs.row_ids.compacted and not obs.col_ids.compacted


@pytest.mark.parametrize("text, users, items, values", [
    ("user,item,rating\n1,2,3.5\n2,1,4\n", [1, 2], [2, 1], [3.5, 4.0]),
    ("\ufeff1\t2\t3\r\n\r\n2\t1\t4\r\n", [1, 2], [2, 1], [3.0, 4.0]),
    ("# made by hand\n\n1 2 3\n   \n2   1\t4  \n", [1, 2], [2, 1], [3.0, 4.0]),
    ("007\t+01\t-2.5e-1\t881250949\n2\t1\t.5\t-1\n", [7, 2], [1, 1], [-0.25, 0.5]),
    ("18446744073709551615\t1000000000000\t4.\n", [2**64 - 1], [10**12], [4.0]),
    ("1, 2 , 3\n", [1], [2], [3.0]),
])
def test_accepted_variants(tmp_path, text, users, items, values):
    path = tmp_path / "r.tsv"
    path.write_bytes(text.encode("utf-8"))
    u, i, v = read_triplets(str(path))
    assert u.dtype == i.dtype == np.uint64
    assert u.tolist() == users and i.tolist() == items and v.tolist() == values


def test_write_then_read_keeps_64_bit_ids(tmp_path):
    path = tmp_path / "r.tsv"
    users = np.array([2**64 - 1, 2**63 + 1, 1], dtype=np.uint64)
    items = np.array([5, 2**53 + 1, 2**53], dtype=np.uint64)
    write_triplets(str(path), users, items, np.array([1.25, -3.0, 1e-7]))
    u, i, v = read_triplets(str(path))
    np.testing.assert_array_equal(u, users)
    np.testing.assert_array_equal(i, items)
    np.testing.assert_array_equal(v, [1.25, -3.0, 1e-7])


def test_pairs_may_stop_after_the_ids_and_ratings_serve_as_pairs(tmp_path):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("3 4\n1 2\n")
    assert [a.tolist() for a in read_pairs(str(pairs))] == [[3, 1], [4, 2]]
    users, items = read_pairs(str(data_file("ml-100k/u1.test")))
    assert users.size == items.size == 20000


def test_lines_split_across_chunks_and_errors_in_later_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    users, items = rng.integers(1, 50, 500).astype(np.uint64), rng.integers(1, 50, 500).astype(np.uint64)
    values = rng.standard_normal(500)
    path = tmp_path / "r.tsv"
    write_triplets(str(path), users, items, values)
    expected = read_triplets(str(path))
    monkeypatch.setattr(triplets, "CHUNK_BYTES", 37)
    monkeypatch.setattr(triplets, "MAX_LINE_BYTES", 64)
    for got, want in zip(read_triplets(str(path)), expected):
        np.testing.assert_array_equal(got, want)
    text = path.read_text().splitlines()
    text[401] = "1\t1\tnan"
    path.write_text("\n".join(text))
    with pytest.raises(InputError, match="line 402: value 'nan'"):
        read_triplets(str(path))
    path.write_text("1\t1\t1\n" + "9" * 70)
    with pytest.raises(InputError, match="line 2: longer than 64 bytes"):
        read_triplets(str(path))


def test_line_of_entry_skips_header_blank_and_comment_lines(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,1,3\n\n# note\n2,2,4\n")
    assert [line_of_entry(str(path), k) for k in (0, 1)] == [2, 5]


def test_the_budget_bounds_the_entries_read(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("1\t1\t3\n" * 1000)
    with input_policy(InputPolicy(max_memory=1000 * triplets.BYTES_PER_ENTRY)):
        assert read_triplets(str(path))[0].size == 1000
    with input_policy(InputPolicy(max_memory=1000 * triplets.BYTES_PER_ENTRY - 1)):
        with pytest.raises(ResourceError, match="reading 1000 entries"):
            read_triplets(str(path))


def test_id_axis_dense_or_compacted():
    axis, rows = IdAxis.build(np.array([0, 2, 2, 3], dtype=np.uint64), None)
    assert (axis.size, axis.compacted, axis.extent, axis.declared) == (4, False, 4, False)
    np.testing.assert_array_equal(rows, [0, 2, 2, 3])
    # 3 distinct keys out of an id space of 7 (> 2 x 3): only the observed keys get rows.
    axis, rows = IdAxis.build(np.array([6, 0, 6, 3], dtype=np.uint64), 7)
    assert (axis.size, axis.compacted, axis.extent, axis.declared) == (3, True, 7, True)
    np.testing.assert_array_equal(rows, [2, 0, 2, 1])
    np.testing.assert_array_equal(axis.ids(), [1, 4, 7])
    probe = np.array([3, 5, 6, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(axis.rows_of(probe), [1, -1, 2, -1])
    dense, _ = IdAxis.build(np.array([0, 1], dtype=np.uint64), None)
    np.testing.assert_array_equal(dense.rows_of(probe), [-1, -1, -1, -1])
    assert axis.first_outside(probe) == 3 and dense.first_outside(probe) is None


def test_shape_declares_the_id_space(tmp_path):
    path = tmp_path / "r.tsv"
    write_triplets(str(path), np.array([1, 5, 4, 2], dtype=np.uint64), np.array([2, 3, 1, 3], dtype=np.uint64),
                   np.array([3.0, 4.5, 1.0, 2.0]))
    obs = read_observed(str(path), shape=(6, 3))
    assert obs.shape == obs.id_space == (6, 3) and obs.row_ids.declared
    obs = read_observed(str(path), shape=(100, 3))
    assert obs.shape == (4, 3) and obs.id_space == (100, 3) and obs.row_ids.compacted
    with pytest.raises(InputError, match="line 2: entry \\(5, 3\\) lies outside the 3x3 matrix"):
        read_observed(str(path), shape=(3, 3))


def test_huge_declared_hdf5_shape_is_compacted(tmp_path):
    path = tmp_path / "obs.h5"
    write_arrays(str(path), {"obs/row": np.array([0, 9_999_999, 5]), "obs/col": np.array([7, 3, 9_999_999]),
                             "obs/value": np.array([1.0, 2.0, 3.0])}, group_attrs={"obs": {"shape": [10**7, 10**7]}})
    obs = read_observed(f"{path}:/obs")
    assert obs.shape == (3, 3) and obs.id_space == (10**7, 10**7)
    np.testing.assert_array_equal(obs.row_ids.ids()[obs.rows], [1, 10**7, 6])
    np.testing.assert_array_equal(obs.col_ids.ids()[obs.cols], [8, 4, 10**7])


def test_test_entries_map_through_the_training_ids(tmp_path):
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("1000000000000\t5\t3\n7\t5\t4\n7\t9\t2\n")
    test.write_text("7\t9\t1\n8\t5\t2\n1000000000000\t6\t5\n")
    obs = read_observed(str(train))
    mapped = read_observed(str(test), training=obs)
    assert mapped.shape == obs.shape == (2, 2) and obs.row_ids.compacted and obs.col_ids.compacted
    np.testing.assert_array_equal(mapped.rows, [0, -1, 1])
    np.testing.assert_array_equal(mapped.cols, [1, 0, -1])


@pytest.mark.parametrize(
    "text, defect",
    [("1\t2\n", "line 1: found 2 column"), ("1\t2\tx\n", "line 1: value 'x'"),
     ("0\t1\t3\n", "line 1: user id 0"), ("1.5\t1\t3\n", "line 1: user id '1.5'"),
     ("1\t1\tnan\n", "line 1: value 'nan'"), ("", "no entries")],
)
def test_bad_triplets(tmp_path, text, defect):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=defect) as err:
        read_observed(str(path))
    assert str(err.value).startswith(str(path))


def test_movielens_double_colon_files_read_like_tab_files(tmp_path):
    """ml-1m / ml-10m ``ratings.dat``: ``user::item::rating::timestamp``; the same entries as the
    tab-separated ml-100k layout; a single ':' is a malformed line."""
    rows = ["1::1193::5::978300760", "1::661::3::978302109", "6040::1097::4::956715648", "2::3::4.5::1"]
    (tmp_path / "ratings.dat").write_text("\n".join(rows) + "\n")
    (tmp_path / "ratings.tsv").write_text("\n".join(r.replace("::", "\t") for r in rows) + "\n")
    colon = read_triplets(str(tmp_path / "ratings.dat"))
    tab = read_triplets(str(tmp_path / "ratings.tsv"))
    for a, b in zip(colon, tab):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.dat").write_text("1::2::3\n4:5::6\n")
    with pytest.raises(InputError, match="line 2"):
        read_triplets(str(tmp_path / "bad.dat"))
