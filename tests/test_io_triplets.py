"""Ratings triplets (MovieLens style) and observed entries from MatrixMarket."""

from __future__ import annotations

import numpy as np
import pytest

from matcli.core.errors import InputError
from matcli.io.load import read_observed
from matcli.io.triplets import write_triplets
from tests.conftest import data_file


def test_movielens_split_reads_all_ratings():
    path = data_file("ml-100k/u1.base")
    obs = read_observed(str(path))
    raw = np.loadtxt(path, dtype=np.int64)
    assert obs.nnz == raw.shape[0] == 80000
    np.testing.assert_array_equal(obs.rows, raw[:, 0] - 1)
    np.testing.assert_array_equal(obs.values, raw[:, 2])
    assert obs.shape == (943, int(raw[:, 1].max()))


def test_shape_override_and_out_of_range(tmp_path):
    path = tmp_path / "r.tsv"
    write_triplets(str(path), np.array([0, 4]), np.array([1, 2]), np.array([3.0, 4.5]))
    assert read_observed(str(path), shape=(10, 10)).shape == (10, 10)
    with pytest.raises(InputError, match="outside the 3x3 matrix"):
        read_observed(str(path), shape=(3, 3))


def test_csv_with_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3.5\n2,1,4\n")
    obs = read_observed(str(path))
    np.testing.assert_array_equal(obs.cols, [1, 0])
    assert obs.shape == (2, 2)


@pytest.mark.parametrize(
    "text, defect",
    [("1\t2\n", "expected user, item, value"), ("1\t2\tx\n", "malformed ratings"),
     ("0\t1\t3\n", "positive"), ("1.5\t1\t3\n", "integers"), ("1\t1\tnan\n", "NaN/Inf"), ("", "empty")],
)
def test_bad_triplets(tmp_path, text, defect):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=defect) as err:
        read_observed(str(path))
    assert str(err.value).startswith(str(path))
