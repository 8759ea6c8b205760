"""Property-based fuzzing of the MatrixMarket and text readers (#16).

Random valid matrices written as MatrixMarket text read back equal; random byte mutations of valid
files read correctly or raise InputError/ResourceError, never anything else, and a file is read
only when every data line obeys the reference grammar (:func:`matcli.io.mtx_grammar.line_defect`).
"""

from __future__ import annotations

import gzip
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcli.core.errors import InputError, ResourceError
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.mtx import read_mtx
from matcli.io.mtx_grammar import Layout, is_comment_or_blank, line_defect
from matcli.io.text import read_text_array

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUDGET = InputPolicy(max_memory=32 * 2**20)


def read_bytes(content: bytes, suffix: str = ".mtx", reader=read_mtx):
    """Write ``content`` to a temporary file and read it under a small budget."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        with input_policy(BUDGET):
            return reader(path)
    finally:
        os.unlink(path)


FIELDS = st.sampled_from(["real", "integer", "complex", "pattern"])
SYMMETRIES = st.sampled_from(["general", "symmetric", "skew-symmetric", "hermitian"])


def number_text(value: float, rng_style: int) -> str:
    """A real in one of the notations the format allows (repr, exponent, fixed, leading point)."""
    if rng_style == 0:
        return repr(value)
    if rng_style == 1:
        return f"{value:.17e}"
    return f"{value:+.17E}"


@st.composite
def coordinate_files(draw):
    """(text, expected dense matrix) of a random coordinate file with free-format whitespace."""
    field = draw(FIELDS)
    symmetry = draw(SYMMETRIES)
    if field == "pattern" and symmetry in ("skew-symmetric", "hermitian"):
        symmetry = "symmetric"
    if symmetry == "hermitian" and field != "complex":
        symmetry = "symmetric"
    m = draw(st.integers(1, 6))
    n = m if symmetry != "general" else draw(st.integers(1, 6))
    expected = np.zeros((m, n), dtype=complex)
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        i, j = draw(st.integers(0, m - 1)), draw(st.integers(0, n - 1))
        if symmetry != "general":
            i, j = max(i, j), min(i, j)
            if symmetry == "skew-symmetric" and i == j:
                continue
        if field == "pattern":
            value, tokens = 1.0, []
        elif field == "integer":
            value = draw(st.integers(-(2**53), 2**53))
            tokens = [str(value)]
        else:
            real = draw(st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False))
            imag = draw(st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)) if field == "complex" else 0.0
            if symmetry == "hermitian" and i == j:
                imag = 0.0
            value = complex(real, imag)
            style = draw(st.integers(0, 2))
            tokens = [number_text(real, style)] + ([number_text(imag, style)] if field == "complex" else [])
        sep = draw(st.sampled_from([" ", "  ", "\t", " \t "]))
        lines.append(draw(st.sampled_from(["", " "])) + sep.join([str(i + 1), str(j + 1)] + tokens))
        expected[i, j] += value
        if symmetry != "general" and i != j:
            mirror = {"symmetric": value, "skew-symmetric": -value, "hermitian": np.conj(value)}[symmetry]
            expected[j, i] += mirror
    comment = draw(st.sampled_from(["", "% a comment\n", "%\n\n"]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = (f"%%MatrixMarket matrix coordinate {field} {symmetry}\n{comment}{m} {n} {len(lines)}\n"
            + "".join(line + eol for line in lines))
    return text.encode(), expected


@FUZZ
@given(coordinate_files())
def test_random_coordinate_file_reads_back_equal(case):
    content, expected = case
    got = read_bytes(content).toarray()
    np.testing.assert_array_equal(got, expected if np.iscomplexobj(got) else expected.real)


@FUZZ
@given(st.integers(0, 5), st.integers(0, 5), st.lists(st.floats(-1e10, 1e10, allow_nan=False), min_size=36,
                                                     max_size=36), st.booleans())
def test_random_array_file_reads_back_equal(m, n, values, compressed):
    matrix = np.array(values[: m * n]).reshape((n, m)).T
    text = f"%%MatrixMarket matrix array real general\n{m} {n}\n" + "".join(f"{v!r}\n" for v in values[: m * n])
    content = gzip.compress(text.encode()) if compressed else text.encode()
    got = read_bytes(content, ".mtx.gz" if compressed else ".mtx")
    np.testing.assert_array_equal(got, matrix)


SEED_FILE = (b"%%MatrixMarket matrix coordinate real symmetric\n% comment\n4 4 5\n1 1 2.5\n2 1 -1e-3\n"
             b"3 3 4\n4 2 .5\n4 4 7.25E+1\n")


@st.composite
def mutations(draw, seed: bytes = SEED_FILE):
    """``seed`` with 1-4 random byte replacements, insertions or deletions."""
    data = bytearray(seed)
    alphabet = st.sampled_from(list(b"0123456789 \t\n\r.,+-eEx_%\x00\xa0naif"))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "insert" or position == len(data):
            data.insert(position, draw(alphabet))
        elif action == "replace":
            data[position] = draw(alphabet)
        else:
            del data[position]
    return bytes(data)


def data_lines(content: bytes) -> list[bytes]:
    """The lines after the size line that carry data."""
    lines = content.replace(b"\r\n", b"\n").split(b"\n")
    body = [line for line in lines[1:] if not is_comment_or_blank(line)]
    return body[1:]


@FUZZ
@given(mutations())
def test_mutated_file_is_read_or_refused_as_input_error(content):
    try:
        matrix = read_bytes(content)
    except (InputError, ResourceError):
        return
    layout = Layout(indices=2, field="real")
    assert all(line_defect(line, layout) is None for line in data_lines(content))
    assert np.isfinite(matrix.data).all()


@FUZZ
@given(mutations())
def test_mutated_gzip_stream_is_read_or_refused_as_input_error(content):
    compressed = bytearray(gzip.compress(SEED_FILE, mtime=0))
    for k in range(0, len(content) % 7 + 1):
        compressed[(len(content) * (k + 3)) % len(compressed)] ^= content[k % len(content)] | 1
    try:
        read_bytes(bytes(compressed), ".mtx.gz")
    except (InputError, ResourceError):
        pass


@FUZZ
@given(mutations(b"1.5 2\n-3e2 4\n# comment\n5 .5\n"), st.sampled_from([".txt", ".csv"]))
def test_mutated_text_array_is_read_or_refused_as_input_error(content, suffix):
    try:
        array = read_bytes(content, suffix, read_text_array)
    except (InputError, ResourceError):
        return
    assert array.dtype == np.float64 and np.isfinite(array).all()


@pytest.mark.parametrize("text", [b"1e308", b"9" * 300, b"1" * 25, b"0" * 30 + b"1", b"-0", b"+.5E-0"])
def test_extreme_but_valid_tokens_read_exactly(text):
    content = b"%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 " + text + b"\n"
    assert read_bytes(content)[0, 0] == float(text)


@st.composite
def simple_pieces(draw):
    """Lines over the simple alphabet, often valid (3 numbers), often one byte off."""
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        fields = [str(draw(st.integers(0, 5))), str(draw(st.integers(0, 5))),
                  draw(st.sampled_from(["1", "-2.5", "1e5", "1.e-3", ".5", "7E+1", "1e999"]))]
        line = draw(st.sampled_from([" ", "\t", "  "])).join(fields)
        if draw(st.booleans()):
            position = draw(st.integers(0, len(line)))
            line = line[:position] + draw(st.sampled_from(list("0123456789 +-.eE"))) + line[position:]
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


@settings(max_examples=400, deadline=None)
@given(simple_pieces(), st.sampled_from(["real", "integer", "pattern"]))
def test_fast_reader_agrees_with_the_strict_reader_or_declines(data, field):
    """read_simple is exact: it returns what loadtxt under the reference grammar reads, or None."""
    from matcli.io.mtx_body import _read_strict
    from matcli.io.mtx_fast import read_simple
    from matcli.io.mtx_source import Piece

    layout = Layout(indices=2, field=field)
    if field == "pattern":
        data = b"\n".join(line.rsplit(None, 1)[0] if len(line.split()) > 2 else line
                          for line in data.split(b"\n"))
    lines = data.count(b"\n")
    fast = read_simple(data, lines, layout, (5, 5))
    if fast is None:
        return
    strict = _read_strict("piece", Piece(1, data, lines), data, layout)
    assert all(line_defect(line, layout) is None for line in data.split(b"\n")[:-1])
    for name in layout.dtype.names:
        np.testing.assert_array_equal(fast[name], strict[name])
