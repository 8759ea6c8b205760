"""Hostile ratings, test and pairs files through the real entry point: every defect ends in one
line on stderr naming the file (and the line), the documented exit code, and no output file."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from matcli.cli.app import main

GOOD = "1\t1\t3\n2\t2\t4\n1\t2\t5\n2\t1\t2\n"

#: (name, bytes of the ratings file, exit code, text the message must hold: the line and the defect)
CORPUS = [
    ("decimal_comma", b"1\t1\t3\n2\t2\t3,5\n", 4, "line 2: value '3,5' is not a decimal number"),
    ("trailing_letters", b"1\t1\t12abc\n", 4, "line 1: value '12abc'"),
    ("two_points", b"1\t1\t3\n1\t2\t1.5.3\n", 4, "line 2: value '1.5.3'"),
    ("exponent_garbage", b"1\t1\t2e5x\n", 4, "line 1: value '2e5x'"),
    ("underscore", b"1\t1\t1_000.5\n", 4, "line 1: value '1_000.5'"),
    ("nan_value", b"1\t1\t3\n2\t2\tnan\n", 4, "line 2: value 'nan'"),
    ("inf_value", b"1\t1\t-inf\n", 4, "line 1: value '-inf'"),
    ("overflow_value", b"1\t1\t3\n1\t2\t1e999\n", 4, "line 2: value '1e999' overflows"),
    ("hex_value", b"1\t1\t0x10\n", 4, "line 1: value '0x10'"),
    ("float_id", b"1\t1\t3\n1.5\t1\t3\n", 4, "line 2: user id '1.5'"),
    ("exponent_id", b"1e3\t1\t3\n", 4, "line 1: user id '1e3'"),
    ("float_huge_id", b"1\t1e20\t3\n", 4, "line 1: item id '1e20'"),
    ("id_beyond_uint64", b"1\t1\t3\n18446744073709551616\t1\t3\n", 4, "line 2: user id '18446744073709551616' exceeds"),
    ("id_1e20_as_integer", b"100000000000000000000\t1\t3\n", 4, "line 1: user id '100000000000000000000' exceeds"),
    ("zero_id", b"1\t1\t3\n1\t0\t3\n", 4, "line 2: item id 0: ids start at 1"),
    ("negative_id", b"-3\t1\t3\n", 4, "line 1: user id '-3'"),
    ("five_columns", b"1\t1\t3\t881250949\t7\n", 4, "line 1: found 5 column(s)"),
    ("two_columns", b"1\t1\n", 4, "line 1: found 2 column(s)"),
    ("float_timestamp", b"1\t1\t3\t881250949\n2\t2\t4\t8812.5\n", 4, "line 2: timestamp '8812.5'"),
    ("timestamp_beyond_int64", b"1\t1\t3\t9223372036854775808\n", 4, "line 1: timestamp"),
    ("column_count_changes", b"1\t1\t3\n2\t2\t4\t881250949\n", 4, "line 2: found 4 column(s), expected 3 as in line 1"),
    ("missing_value", b"1\t1\t3\n2\t2\t\n", 4, "line 2: found 2 column(s)"),
    ("empty_field", b"1\t\t3\n", 4, "line 1: item id ''"),
    ("header_not_first", b"1\t1\t3\nuser\titem\trating\n", 4, "line 2: user id 'user'"),
    ("second_header", b"user\titem\trating\nuser\titem\trating\n1\t1\t3\n", 4, "line 2: user id 'user'"),
    ("nul_byte", b"1\t1\t3\n2\t2\x00\t4\n", 4, "line 2: holds a NUL byte"),
    ("lone_carriage_return", b"1\t1\t3\r2\t2\t4\n", 4, "line 1: holds a carriage return"),
    ("latin1_bytes", b"1\t1\t3\n2\t2\t4\xe9\n", 4, "line 2: value '4\\\\xe9'"),
    ("quoted_csv", b'"1","1","3"\n"2","2","4"\n', 4, "line 2: user id '\"2\"'"),
    ("only_header", b"user,item,rating\n", 4, "no entries"),
    ("only_comments", b"# nothing\n\n   \n", 4, "no entries"),
    ("empty_file", b"", 4, "no entries"),
    ("binary_noise", bytes(range(256)) * 4, 4, "line 1: holds a NUL byte"),
]


def run(capsys, args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("name, content, code, text", CORPUS, ids=[case[0] for case in CORPUS])
def test_hostile_ratings_file(capsys, tmp_path, name, content, code, text):
    ratings = tmp_path / f"{name}.tsv"
    ratings.write_bytes(content)
    out = tmp_path / "model.h5"
    exit_code, err = run(capsys, ["complete", ratings, "--rank", "1", "-o", out, "--quiet", "--max-memory", "64M"])
    assert exit_code == code, err
    assert err.count("\n") == 1 and err.startswith(f"matcli: error: {ratings}: ")
    assert text in err
    assert not out.exists()


@pytest.mark.parametrize("role", ["--test", "--predict"])
@pytest.mark.parametrize("name, content, code, text",
                         [case for case in CORPUS if case[0] in ("decimal_comma", "float_id", "nul_byte", "zero_id",
                                                                 "id_beyond_uint64", "column_count_changes")])
def test_hostile_test_and_pairs_files(capsys, tmp_path, role, name, content, code, text):
    ratings, other = tmp_path / "r.tsv", tmp_path / f"{name}.tsv"
    ratings.write_text(GOOD)
    other.write_bytes(content)
    out, preds = tmp_path / "model.h5", tmp_path / "p.tsv"
    args = ["complete", ratings, "--rank", "1", "-o", out, "--quiet", "--max-memory", "64M", role, other]
    if role == "--predict":
        args += ["--predictions-out", preds]
    exit_code, err = run(capsys, args)
    assert exit_code == code, err
    assert err.count("\n") == 1 and f"matcli: error: {other}: " in err and text in err
    assert not out.exists() and not preds.exists()


def test_ids_outside_a_declared_shape_name_the_line(capsys, tmp_path):
    ratings = tmp_path / "r.tsv"
    ratings.write_text(GOOD + "# comment\n7\t1\t3\n")
    exit_code, err = run(capsys, ["complete", ratings, "--shape", "5,5", "-o", tmp_path / "m.h5", "--quiet"])
    assert exit_code == 4 and "line 6: entry (7, 1) lies outside the 5x5 matrix" in err
    mtx = tmp_path / "obs.mtx"
    mtx.write_text("%%MatrixMarket matrix coordinate real general\n3 3 3\n1 1 1.0\n2 2 2.0\n3 1 1.0\n")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("1\t1\n\n5\t1\n")
    exit_code, err = run(capsys, ["complete", mtx, "--rank", "1", "--predict", pairs, "--predictions-out",
                                  tmp_path / "p.tsv", "-o", tmp_path / "m.h5", "--quiet"])
    assert exit_code == 4 and f"{pairs}: line 3: entry (5, 1) lies outside the 3x3 training matrix" in err


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_non_regular_ratings_files_are_refused(capsys, tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "r.tsv"
        os.mkfifo(path)
    elif kind == "directory":
        path = tmp_path / "r.tsv"
        path.mkdir()
    else:
        path = "/dev/zero"
    start = time.perf_counter()
    exit_code, err = run(capsys, ["complete", path, "--rank", "1", "-o", tmp_path / "m.h5", "--quiet"])
    assert exit_code == 4 and f"{path}: is a" in err and err.count("\n") == 1
    assert time.perf_counter() - start < 5


def test_a_4_gib_line_is_refused_after_one_chunk(capsys, tmp_path):
    path = tmp_path / "one_line.tsv"
    with open(path, "wb") as fh:
        fh.write(b"1\t1\t")
        fh.truncate(4 * 2**30)  # sparse: no disk space, no newline in 4 GiB
    start = time.perf_counter()
    exit_code, err = run(capsys, ["complete", path, "--rank", "1", "-o", tmp_path / "m.h5", "--quiet",
                                  "--max-memory", "64M"])
    assert exit_code == 4 and "line 1: longer than 65536 bytes" in err
    assert time.perf_counter() - start < 5


def test_ratings_beyond_the_budget_are_a_resource_error(capsys, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "r.tsv"
    np.savetxt(path, np.column_stack([rng.integers(1, 1000, 30000), rng.integers(1, 1000, 30000),
                                      rng.integers(1, 6, 30000)]), fmt="%d", delimiter="\t")
    exit_code, err = run(capsys, ["complete", path, "--rank", "1", "-o", tmp_path / "m.h5", "--quiet",
                                  "--max-memory", "1M"])
    assert exit_code == 7 and f"{path}: reading 30000 entries would need" in err
    assert not (tmp_path / "m.h5").exists()


def test_factors_beyond_the_budget_are_refused_before_fitting(capsys, tmp_path):
    rows, cols = np.divmod(np.arange(4000), 40)
    path = tmp_path / "r.tsv"
    np.savetxt(path, np.column_stack([rows + 1, cols + 1, np.ones(4000)]), fmt="%d", delimiter="\t")
    # 100 + 40 factor rows at rank 24: 140 * 8 * (8 * 32) bytes = 280 KiB > 256K; reading takes 188 KiB.
    exit_code, err = run(capsys, ["complete", path, "--rank", "24", "-o", tmp_path / "m.h5", "--quiet",
                                  "--max-memory", "256K"])
    assert exit_code == 7 and "factors of 100 x 40 factor rows at rank 24 would need" in err
