"""Hostile MatrixMarket files and text right-hand sides through the real CLI entry point (#16).

Each case ends in exit 4 (InputError) naming the file and, where a line is to blame, the line, or
exit 7 (ResourceError) when the declared sizes exceed the budget: one line on stderr, no traceback,
no output file, within a second. The two inputs that crashed scipy's C reader run in a subprocess.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time

import pytest

from matcli.cli.app import main
from tests.conftest import REPO, shared_data_dir

BANNER = b"%%MatrixMarket matrix coordinate real general\n"
INVALID = shared_data_dir() / "format-variants" / "invalid"
BUDGET = "64M"
#: Each refusal takes well under a second on an idle machine; twice that leaves room for a loaded one.
SECONDS = 2.0


def coordinate(body: bytes, size: bytes = b"3 3 1", kind: bytes = b"real general") -> bytes:
    return b"%%MatrixMarket matrix coordinate " + kind + b"\n" + size + b"\n" + body


HOSTILE = {
    # name: (file bytes, exit code, what stderr must contain)
    "symmetric_array_not_square": (b"%%MatrixMarket matrix array real symmetric\n2 3\n1\n2\n3\n4\n5\n", 4,
                                   "line 2: a symmetric matrix must be square"),
    "nul_after_value": (coordinate(b"1 1 3\x00\n"), 4, "line 3: value '3\\x00' is not a real number"),
    "decimal_comma": (coordinate(b"1 1 3,5\n"), 4, "line 3: value '3,5' is not a real number"),
    "trailing_letters": (coordinate(b"1 1 12abc\n"), 4, "line 3: value '12abc' is not a real number"),
    "two_points": (coordinate(b"1 1 1.5.3\n"), 4, "line 3: value '1.5.3' is not a real number"),
    "exponent_then_letter": (coordinate(b"1 1 2e5x\n"), 4, "line 3: value '2e5x' is not a real number"),
    "underscore_digits": (coordinate(b"1 1 1_000.5\n"), 4, "line 3: value '1_000.5' is not a real number"),
    "fraction_in_integer_file": (coordinate(b"1 1 2.7\n", kind=b"integer general"), 4,
                                 "line 3: value '2.7' is not an integer"),
    "extra_token": (coordinate(b"1 1 3 4\n"), 4, "line 3: expected 3 fields (row index column index value), found 4"),
    "imaginary_part_in_real_file": (coordinate(b"% c\n1 1 3 0\n"), 4, "line 4: expected 3 fields"),
    "point_in_column_index": (coordinate(b"1 1.5 3\n"), 4, "line 3: column index '1.5' is not an integer"),
    "missing_value": (coordinate(b"2 2 1\n1 1\n% pad\n", size=b"3 3 2"), 4, "line 4: expected 3 fields"),
    "skew_diagonal": (coordinate(b"1 1 5\n", kind=b"real skew-symmetric"), 4,
                      "line 3: entry (1, 1) lies on the diagonal"),
    "symmetric_upper": (coordinate(b"2 1 4\n1 2 5\n", size=b"3 3 2", kind=b"real symmetric"), 4,
                        "line 4: entry (1, 2) lies above the diagonal"),
    "hermitian_upper": (coordinate(b"1 3 5 1\n", kind=b"complex hermitian"), 4,
                        "line 3: entry (1, 3) lies above the diagonal"),
    "skew_upper": (coordinate(b"2 3 5\n", kind=b"integer skew-symmetric"), 4,
                   "line 3: entry (2, 3) lies above the diagonal"),
    "hermitian_complex_diagonal": (coordinate(b"2 2 5 1\n", kind=b"complex hermitian"), 4,
                                   "line 3: diagonal entry (2, 2) has imaginary part 1"),
    "index_overflows_int64": (coordinate(b"99999999999999999999 1 1\n"), 4, "line 3: row index '99999999999999999999' "
                                                                             "overflows a 64-bit integer"),
    "index_beyond_2_31_outside_size": (coordinate(b"3000000000 1 1\n"), 4, "line 3: row index 3000000000 outside 1..3"),
    "zero_size_with_entry": (coordinate(b"1 1 1\n", size=b"0 0 1"), 4, "line 3: row index 1 outside 1..0"),
    "huge_exponent": (coordinate(b"1 1 1e999999999999\n"), 4, "line 3: value '1e999999999999' is NaN, Inf or overflows"),
    "long_digit_string": (coordinate(b"1 1 " + b"9" * 400_000 + b"\n"), 4, "line 3: value '9999"),
    "nan_value": (coordinate(b"1 1 nan\n"), 4, "line 3: value 'nan' is NaN, Inf"),
    "inline_comment": (coordinate(b"1 1 3 % note\n"), 4, "line 3: expected 3 fields"),
    "lone_carriage_returns": (b"%%MatrixMarket matrix coordinate real general\r3 3 1\r1 1 1\r", 4,
                              "line 1: malformed MatrixMarket banner"),
    "size_line_not_integer": (coordinate(b"1 1 1\n", size=b"3 3.0 1"), 4, "line 2: columns '3.0' is not an integer"),
    "empty_file": (b"", 4, "line 1: not a MatrixMarket file"),
    "truncated_after_comment": (coordinate(b"1 1 1\n" + b"%" * 100 + b"\n", size=b"3 3 5"), 4,
                                "file truncated: declares 5 entries, found 1"),
    "declares_more_entries_than_bytes": (coordinate(b"1 1 1\n", size=b"100000000 100000000 1000000000"), 4,
                                         "line 2: declares 1000000000 entries but the 6 bytes after it hold at most 1"),
    "array_declares_more_than_bytes": (b"%%MatrixMarket matrix array real general\n100000 100000\n1\n", 4,
                                       "line 2: declares 10000000000 entries but the 2 bytes after it hold at most 1"),
    "declared_csr_over_budget": (coordinate(b"1 1 1\n2 2 2\n3 3 3\n", size=b"100000000 100000000 3"), 7,
                                 "more than the memory budget of 64.0 MiB"),
    "line_longer_than_a_mebibyte": (coordinate(b"1 1 " + b" " * (2**20 + 10) + b"1\n"), 4,
                                    "line 3 is longer than 1.0 MiB"),
}


def check_refused(path, out, capsys, code: int, expected: str, args=None) -> None:
    start = time.perf_counter()
    got = main([str(a) for a in (args or ["factorize", path, "-o", out, "-k", "lu", "--max-memory", BUDGET])])
    elapsed = time.perf_counter() - start
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert got == code, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"matcli: error: {path}: ")
    assert expected in lines[0]
    assert not out.exists()
    assert elapsed < SECONDS


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_matrix_market_file_is_refused(name, tmp_path, capsys):
    content, code, expected = HOSTILE[name]
    path = tmp_path / f"{name}.mtx"
    path.write_bytes(content)
    check_refused(path, tmp_path / "out.h5", capsys, code, expected)


INVALID_FIXTURES = {
    "fmm_invalid_bad_banner.mtx": "line 1: not a MatrixMarket file",
    "fmm_invalid_bad_banner_2.mtx": "line 1: not a MatrixMarket file",
    "fmm_invalid_bad_field.mtx": "line 1: invalid MatrixMarket field",
    "fmm_invalid_bad_format.mtx": "line 1: invalid MatrixMarket format",
    "fmm_invalid_bad_object.mtx": "line 1: invalid MatrixMarket object",
    "fmm_invalid_bad_symmetry.mtx": "line 1: invalid MatrixMarket symmetry",
    "fmm_invalid_bad_value.mtx": "line 3: value 'not_a_double' is not a real number",
    "fmm_invalid_bad_value_2.mtx": "line 5: value 'foooooo' is not a real number",
    "fmm_invalid_bad_value_3.mtx": "line 4: value 'ffsafdsafas' is not a real number",
    "fmm_invalid_bad_value_4.mtx": "line 4: index 'ffsafdsafas' is not an integer",
    "fmm_invalid_dimensions_out_of_range_1.mtx": "line 3: negative rows -3",
    "fmm_invalid_dimensions_out_of_range_2.mtx": "line 3: negative columns -3",
    "fmm_invalid_dimensions_out_of_range_3.mtx": "line 3: negative entries -3",
    "fmm_invalid_indices_out_of_range_1.mtx": "line 5: row index 5000 outside 1..7",
    "fmm_invalid_indices_out_of_range_2.mtx": "line 6: column index 2000 outside 1..7",
    "fmm_invalid_indices_out_of_range_3.mtx": "line 5: row index 0 outside 1..7",
    "fmm_invalid_indices_out_of_range_4.mtx": "line 6: column index 0 outside 1..7",
    "fmm_invalid_indices_out_of_range_5.mtx": "line 5: row index -1 outside 1..7",
    "fmm_invalid_indices_out_of_range_6.mtx": "line 6: column index -2 outside 1..7",
    "fmm_invalid_matrix_coord_too_long.mtx": "line 7: more data lines than the 3 declared",
    "fmm_invalid_symmetry_vector.mtx": "line 1: a MatrixMarket vector cannot be symmetric",
    "fmm_invalid_truncated_header_1.mtx": "file ends after line 2 without the size line",
    "fmm_invalid_truncated_header_2.mtx": "line 1: malformed MatrixMarket banner",
    "fmm_invalid_truncated_line_1.mtx": "line 2: declares 12 entries but the 15 bytes after it hold at most 2",
    "fmm_invalid_truncated_line_2.mtx": "line 2: declares 12 entries but the 13 bytes after it hold at most 2",
    "fmm_invalid_truncated_lines.mtx": "line 2: declares 12 entries but the 11 bytes after it hold at most 2",
    "fmm_invalid_vector_array_too_long.mtx": "line 7: more data lines than the 4 declared",
    "fmm_invalid_vector_coord_too_long.mtx": "line 6: more data lines than the 3 declared",
    "fmm_invalid_vector_index_out_of_range_1.mtx": "line 4: index 0 outside 1..4",
    "fmm_invalid_vector_index_out_of_range_2.mtx": "line 4: index 200 outside 1..4",
    "fmm_invalid_vector_negative_length.mtx": "line 2: negative length -4",
    "fmm_overflow_dim_gt_int64.mtx": "line 2: rows '19223372036854775808' overflows a 64-bit integer",
    "fmm_overflow_index_gt_int64.mtx": "line 6: row index '19223372036854775808' overflows a 64-bit integer",
    "fmm_overflow_value_gt_complex128.mtx": "line 4: value '1E9999' is NaN, Inf or overflows float64",
    "fmm_overflow_value_gt_float128.mtx": "line 4: value '1E9999' is NaN, Inf or overflows float64",
    "fmm_overflow_value_gt_float64.mtx": "line 4: value '1E310' is NaN, Inf or overflows float64",
    "fmm_overflow_value_gt_int64.mtx": "line 6: value '19223372036854775808' overflows a 64-bit integer",
    "nrail5177_nonstandard_banner.mtx": "line 1: malformed MatrixMarket banner '%%MatrixMarket matrix format'",
    "ss_r2_zero_based_indices.mtx": "line 9: row index 0 outside 1..2",
    "ss_west0067_noheader.mtx": "line 1: not a MatrixMarket file",
}


@pytest.mark.parametrize("name", sorted(INVALID_FIXTURES))
def test_invalid_fixture_is_refused_naming_its_defect(name, tmp_path, capsys):
    path = INVALID / name
    if not path.exists():
        pytest.skip(f"{name} not in this data root")
    check_refused(path, tmp_path / "out.h5", capsys, 4, INVALID_FIXTURES[name])


def test_every_invalid_fixture_has_an_expectation_or_is_accepted_on_purpose():
    accepted = {"fmm_overflow_index_gt_int8.mtx", "fmm_overflow_value_gt_int32.mtx"}
    names = {p.name for p in INVALID.glob("*.mtx")}
    assert names <= set(INVALID_FIXTURES) | accepted


def gzip_members(*parts: bytes, repeat_last: int = 1) -> bytes:
    """A gzip file of one member per part; the last member is repeated (decompresses to many copies)."""
    members = [gzip.compress(part, compresslevel=9, mtime=0) for part in parts]
    return b"".join(members[:-1]) + members[-1] * repeat_last


def bad_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]


# name: (builder of the file bytes, exit code, what stderr must contain); built when the test runs so
# that collecting the suite does not hold megabytes of bombs.
GZIP_CASES = {
    # 4 GiB of one line, about 4 MB on disk: stops after the first MiB of the line.
    "bomb_one_line": (lambda: gzip_members(coordinate(b"1 1 "), b"1" * 2**22, repeat_last=1024), 4,
                      "line 3 is longer than 1.0 MiB"),
    # 4 GiB of blank lines after 1 declared entry: stops past 16 MiB of text.
    "bomb_blank_lines": (lambda: gzip_members(coordinate(b"1 1 1\n"), b"\n" * 2**22, repeat_last=1024), 4,
                         "more than 16.0 MiB of text after line 2"),
    "declared_dense_over_budget": (lambda: gzip.compress(b"%%MatrixMarket matrix array real general\n"
                                                         b"100000 100000\n1\n"), 7, "more than the memory budget"),
    "not_gzip": (lambda: coordinate(b"1 1 1\n"), 4, "corrupt gzip stream (Not a gzipped file"),
    "truncated_stream": (lambda: gzip.compress(coordinate(b"".join(b"1 1 %d\n" % k for k in range(1000)),
                                                          size=b"3 3 1000"))[:2000], 4,
                         "corrupt gzip stream (Compressed file ended"),
    "bad_crc": (lambda: bad_crc(gzip.compress(coordinate(b"1 1 1\n"))), 4, "corrupt gzip stream (CRC check failed"),
}


@pytest.mark.parametrize("name", sorted(GZIP_CASES))
def test_hostile_gzip_is_refused_within_bounds(name, tmp_path, capsys):
    build, code, expected = GZIP_CASES[name]
    path = tmp_path / f"{name}.mtx.gz"
    path.write_bytes(build())
    check_refused(path, tmp_path / "out.h5", capsys, code, expected)


def test_gzip_bomb_cases_are_small_on_disk_and_large_decompressed():
    for name, part in (("bomb_one_line", b"1" * 2**22), ("bomb_blank_lines", b"\n" * 2**22)):
        content = GZIP_CASES[name][0]()
        assert len(content) < 8 * 2**20
        assert content.count(gzip.compress(part, compresslevel=9, mtime=0)) == 1024  # 4 GiB decompressed


@pytest.mark.parametrize("name, content", [
    ("symmetric_array_not_square", HOSTILE["symmetric_array_not_square"][0]),
    ("nul_after_value", HOSTILE["nul_after_value"][0]),
])
def test_former_segfaults_exit_4_in_a_separate_process(name, content, tmp_path):
    path = tmp_path / f"{name}.mtx"
    path.write_bytes(content)
    out = tmp_path / "factors.h5"
    proc = subprocess.run([sys.executable, "-m", "matcli", "factorize", str(path), "-o", str(out), "-k", "lu"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"matcli: error: {path}: line ")
    assert not out.exists()


TEXT_RHS = {
    "b.txt": (b"1\n3,5\n", "line 2: field 1 '3,5' is not a decimal number"),
    "b_underscore.txt": (b"1_000\n2\n", "line 1: field 1 '1_000' is not a decimal number"),
    "b_nan.txt": (b"1\nnan\n", "line 2: field 1 'nan' is not a decimal number"),
    "b_inf.dat": (b"# rhs\ninf\n2\n", "line 2: field 1 'inf' is not a decimal number"),
    "b_letters.txt": (b"1\n12abc\n", "line 2: field 1 '12abc' is not a decimal number"),
    "b_overflow.txt": (b"1\n1e999\n", "line 2: field 1 '1e999' overflows float64"),
    "b_ragged.tsv": (b"1\t2\n3\n", "line 2: 1 fields, the rows above have 2"),
    "b_empty_field.csv": (b"1,2\n3,,4\n", "line 2: field 2 '' is not a decimal number"),
    "b_hex.txt": (b"0x10\n2\n", "line 1: field 1 '0x10' is not a decimal number"),
    "b_nul.txt": (b"1\n2\x00\n", "line 2: field 1 '2\\x00' is not a decimal number"),
    "b_inline_comment.txt": (b"1\n2 # two\n", "line 2: field 2 '#' is not a decimal number"),
    "b_empty.txt": (b"", "no numbers"),
    "b_only_comments.txt": (b"# nothing\n% here\n", "no numbers"),
}


@pytest.fixture
def identity2(tmp_path):
    path = tmp_path / "A.mtx"
    path.write_bytes(coordinate(b"1 1 1\n2 2 1\n", size=b"2 2 2"))
    return path


@pytest.mark.parametrize("name", sorted(TEXT_RHS))
def test_hostile_text_right_hand_side_is_refused(name, identity2, tmp_path, capsys):
    content, expected = TEXT_RHS[name]
    rhs = tmp_path / name
    rhs.write_bytes(content)
    out = tmp_path / "x.h5"
    check_refused(rhs, out, capsys, 4, expected,
                  args=["solve", identity2, "-b", rhs, "-o", out, "--max-memory", BUDGET])


def test_valid_text_right_hand_side_with_comments_and_crlf_solves(identity2, tmp_path, capsys):
    rhs = tmp_path / "b.txt"
    rhs.write_bytes(b"# b\r\n1.5\r\n\r\n-2e0\r\n")
    out = tmp_path / "x.h5"
    assert main([str(a) for a in ["solve", identity2, "-b", rhs, "-o", out, "--max-memory", BUDGET]]) == 0
    assert out.exists()
