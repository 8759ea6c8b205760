"""The fast MatrixMarket path (#18): as exact and as strict as the reference grammar, on every layout.

* Files scipy writes, in every field, symmetry and format, reformatted in the ways the format
  allows (blanks, tabs, comment and blank lines inside the data, exponent forms, leading zeros and
  signs, CRLF), read exactly like ``scipy.io.mmread`` reads the original; the real, integer and
  pattern ones without the loadtxt fallback.
* Random single-byte corruptions of such files read exactly like a line-by-line reader built on
  the reference grammar (:func:`~matcli.io.mtx_grammar.line_defect`) reads them, or are refused by
  both (InputError; ResourceError for a size line grown beyond the budget), never anything else.
* Text vectors (one number per line) take the same reader, exactly and without loadtxt, and
  their corruptions read as the text grammar reads them or are refused.
* Every file of the shared ``format-variants/invalid`` folder exits 4 with one line through
  ``matcli info`` and ``matcli solve``.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from unittest import mock

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcli.core.errors import InputError, ResourceError
from matcli.io import mtx_body, mtx_build
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.mtx import read_declared, read_mtx
from matcli.io.mtx_fast import drop_blank_and_comment_lines, read_fast
from matcli.io.mtx_grammar import REAL, SEPARATOR, Layout, is_comment_or_blank, line_defect
from matcli.io.mtx_source import LineSource
from matcli.io.text import read_text_array
from tests.conftest import run_cli, shared_data_dir

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUDGET = InputPolicy(max_memory=32 * 2**20)
INVALID = sorted((shared_data_dir() / "format-variants" / "invalid").glob("*.mtx"))
#: Valid for matcli (64-bit indices and values), invalid only for readers with narrower types.
ACCEPTED_OVERFLOW = {"fmm_overflow_index_gt_int8.mtx", "fmm_overflow_value_gt_int32.mtx"}


def with_file(content: bytes, reader, suffix: str = ".mtx"):
    """``reader(path)`` of a temporary file holding ``content``, under a small memory budget."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        with input_policy(BUDGET):
            return reader(path)
    finally:
        os.unlink(path)


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


# --- random valid files, written by scipy -----------------------------------------------------------

@st.composite
def scipy_files(draw) -> bytes:
    """A small matrix of random field, symmetry and format, as scipy.io.mmwrite writes it."""
    field = draw(st.sampled_from(["real", "integer", "complex", "pattern"]))
    kinds = {"real": ["general", "symmetric", "skew-symmetric"], "integer": ["general", "symmetric", "skew-symmetric"],
             "complex": ["general", "symmetric", "skew-symmetric", "hermitian"], "pattern": ["general", "symmetric"]}
    symmetry = draw(st.sampled_from(kinds[field]))
    coordinate = field == "pattern" or draw(st.booleans())
    m = draw(st.integers(1, 6))
    n = m if symmetry != "general" else draw(st.integers(1, 6))
    if field == "integer":
        element = st.integers(-(2**53) + 1, 2**53 - 1)  # +-2^53 itself is exact but goes to loadtxt
    elif field == "pattern":
        element = st.just(1.0)
    else:
        element = st.floats(allow_nan=False, allow_infinity=False)
    values = np.array(draw(st.lists(element, min_size=2 * m * n, max_size=2 * m * n)),
                      dtype=np.int64 if field == "integer" else np.float64)
    a = values[: m * n].reshape(m, n)
    if field == "complex":
        a = a + 1j * values[m * n:].reshape(m, n)
    if coordinate:
        a = a * np.array(draw(st.lists(st.booleans(), min_size=m * n, max_size=m * n))).reshape(m, n)
    if symmetry != "general":
        lower = np.tril(a, -1)
        upper = {"symmetric": lower.T, "skew-symmetric": -lower.T, "hermitian": lower.conj().T}[symmetry]
        diagonal = {"symmetric": np.diag(np.diag(a)), "skew-symmetric": 0 * a,
                    "hermitian": np.diag(np.diag(a).real)}[symmetry]
        a = lower + upper + diagonal
    target = io.BytesIO()
    scipy.io.mmwrite(target, sp.coo_matrix(a) if coordinate else a, field=field, symmetry=symmetry)
    return target.getvalue()


def real_token(token: bytes, style: int) -> bytes:
    """The same real number in another notation the format allows (exact: repr or 17 digits)."""
    value = float(token)
    return [token, repr(value).encode(), b"%.17e" % value, b"%+.17E" % value, b"%.16e" % value][style]


@st.composite
def reformatted(draw, content: bytes) -> tuple[bytes, bool]:
    """``content`` with its data lines reformatted as the format allows; and whether loadtxt is needed.

    loadtxt is needed for a leading ``+`` (fast_matrix_market refuses it) and a complex field.
    """
    header, _, body = content.partition(b"\n")
    comment, _, body = body.partition(b"\n")
    size, _, body = body.partition(b"\n")
    field = header.split()[3].decode()
    needs_strict = field == "complex"
    indices = {b"coordinate": 2, b"array": 0}[header.split()[2]]
    out = []
    for line in body.split(b"\n")[:-1]:
        tokens = line.split()
        for k, token in enumerate(tokens):
            if k < indices or field == "integer":
                sign, digits = (token[:1], token[1:]) if token[:1] == b"-" else (b"", token)
                plus = not sign and draw(st.integers(0, 4)) == 0
                needs_strict |= plus
                tokens[k] = (b"+" if plus else sign) + draw(st.sampled_from([b"", b"", b"0", b"00"])) + digits
            else:
                tokens[k] = real_token(token, draw(st.integers(0, 4)))
                needs_strict |= tokens[k].startswith(b"+")
        separators = [draw(st.sampled_from([b" ", b"  ", b"\t", b" \t "])) for _ in tokens]
        text = b"".join(sep + token for sep, token in zip(separators, tokens))[len(separators[0]):]
        text = draw(st.sampled_from([b"", b" ", b"\t"])) + text + draw(st.sampled_from([b"", b" ", b"  "]))
        out.append(text)
        extra = draw(st.sampled_from([None, None, None, b"", b"  ", b"% note", b"  % indented note", b"%"]))
        if extra is not None:
            out.append(extra)
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    lines = [header, comment, size] + out
    return eol.join(lines) + (eol if draw(st.booleans()) or not out else b""), needs_strict


@st.composite
def reformatted_files(draw):
    original = draw(scipy_files())
    return original, *draw(reformatted(original))


@SETTINGS
@given(reformatted_files())
def test_reformatted_scipy_file_reads_exactly_as_scipy_reads_the_original(case):
    original, content, needs_strict = case
    expected = dense(scipy.io.mmread(io.BytesIO(original)))
    strict = mock.patch.object(mtx_body, "_read_strict", wraps=mtx_body._read_strict)
    with strict as spy:
        got = dense(with_file(content, read_mtx))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == (np.complex128 if np.iscomplexobj(expected) else np.float64)
    if not needs_strict:
        assert spy.call_count == 0, "a valid real/integer/pattern file left the fast path"


# --- random corruptions against a line-by-line reference reader --------------------------------------

def reference_read(path: str) -> np.ndarray | sp.csr_matrix:
    """The matrix a line-by-line reader on the reference grammar reads; InputError when it refuses.

    Header and the checks on what the entries mean are matcli's own (read_declared, mtx_build);
    the data lines are taken one by one with :func:`is_comment_or_blank` and :func:`line_defect`
    and converted with int() and float().
    """
    with LineSource(path) as source:
        declared = read_declared(path, source)
        layout = declared.layout
        rows = []
        while (numbered := source.next_line()) is not None:
            _, line = numbered
            if is_comment_or_blank(line):
                continue
            if line_defect(line, layout):
                raise InputError(path, line_defect(line, layout))
            rows.append(SEPARATOR.split((line[:-1] if line.endswith(b"\r") else line).strip(b" \t")))
    if len(rows) != declared.count:
        raise InputError(path, f"{len(rows)} data lines, {declared.count} declared")
    entries = {}
    for k, name in enumerate(layout.dtype.names):
        kind = int if name.startswith("i") or layout.field == "integer" else float
        column = np.array([kind(tokens[k]) for tokens in rows], dtype=layout.dtype[name])
        entries[name] = column - 1 if name.startswith("i") else column

    def locate(k):
        return 0, b"value"

    header, shape = declared.header, declared.shape
    if header.object == "vector" and header.format == "coordinate":
        return mtx_build.coordinate_vector(path, entries, shape[0], header.field, True, locate)
    if header.format == "coordinate":
        return mtx_build.coordinate_matrix(path, entries, shape, header.field, header.symmetry, True, locate)
    return mtx_build.array_matrix(path, entries, shape, header.field, header.symmetry, True, locate)


def outcome(content: bytes, reader, suffix: str = ".mtx"):
    """('read', dense matrix) or ('refused', error class name)."""
    try:
        return "read", dense(with_file(content, reader, suffix))
    except (InputError, ResourceError) as exc:
        return "refused", type(exc).__name__


@st.composite
def corrupted_files(draw):
    original, content, _ = draw(reformatted_files())
    data = bytearray(content)
    position = draw(st.integers(0, len(data)))
    byte = draw(st.sampled_from(list(b"0123456789 \t\n\r.eE+-%nanif,_x\x00\x0c\xa0")))
    action = draw(st.sampled_from(["replace", "insert", "delete"]))
    if action == "insert" or position == len(data):
        data.insert(position, byte)
    elif action == "replace":
        data[position] = byte
    else:
        del data[position]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_files())
def test_corrupted_file_reads_as_the_reference_reads_it_or_is_refused(content):
    ours, reference = outcome(content, read_mtx), outcome(content, reference_read)
    assert ours[0] == reference[0], (ours, reference)
    if ours[0] == "read":
        np.testing.assert_array_equal(ours[1], reference[1])


# --- the fast path's own cases -----------------------------------------------------------------------

COORDINATE = b"%%MatrixMarket matrix coordinate real general\n3 3 2\n"


@pytest.mark.parametrize("body, defect", [
    (b"1 1 5-nan\n2 2 1\n", "line 3: value '5-nan' is not a real number"),  # its tail could pass for the sentinel
    (b"1 1 nan(7)\n2 2 1\n", "line 3: value 'nan(7)' is not a real number"),
    (b"1 2.5\n2 2 1\n", "line 3: expected 3 fields"),  # i j.f: the token count, not the sentinel, finds it
    (b"1 2-5\n2 2 1\n", "line 3: expected 3 fields"),
    (b"1 2.5\n2 2 1 1\n", "line 3: expected 3 fields"),
    (b"1 1 1e\n2 2 1\n", "line 3: value '1e' is not a real number"),
    (b"1 1 1\n2 2 1\x0c\n", "line 4: value '1\\x0c' is not a real number"),
    (b"1 1 1\r\r\n2 2 1\n", "line 3: value '1\\r' is not a real number"),
])
def test_what_the_c_reader_would_read_by_prefix_is_refused(body, defect):
    with pytest.raises(InputError, match=re.escape(defect)):
        with_file(COORDINATE + body, read_mtx)


@pytest.mark.parametrize("kind, body, defect", [
    (b"array real general\n2 1\n", b"1.5.3\n2\n", "line 3: value '1.5.3' is not a real number"),
    (b"array integer general\n2 1\n", b"1\n2.0\n", "line 4: value '2.0' is not an integer"),
    (b"array integer general\n2 1\n", b"1e5\n1\n", "line 3: value '1e5' is not an integer"),
    (b"coordinate pattern general\n3 3 2\n", b"1 2.5\n2 2\n", "line 3: column index '2.5' is not an integer"),
    (b"coordinate pattern general\n3 3 2\n", b"1 2 3\n2 2\n", "line 3: expected 2 fields"),
    (b"vector coordinate real general\n3 2\n", b"2.5\n1 1\n", "line 3: expected 2 fields"),
    (b"vector coordinate real general\n3 2\n", b"2.5\n1 1 1\n", "line 3: expected 2 fields"),
    (b"vector coordinate pattern general\n3 2\n", b"2-1\n1\n", "line 3: index '2-1' is not an integer"),
])
def test_every_layout_refuses_tokens_read_by_prefix(kind, body, defect):
    obj = b"" if kind.startswith(b"vector") else b"matrix "
    with pytest.raises(InputError, match=re.escape(defect)):
        with_file(b"%%MatrixMarket " + obj + kind + body, read_mtx)


def test_blank_lines_comments_tabs_and_crlf_stay_on_the_fast_path():
    body = b"\r\n".join([b"1\t1 1.5", b"", b"   ", b"  % indented comment", b"%", b"2 2\t\t-2e0 ", b"\r",
                         b"3 1 7"]) + b"\r\n"
    content = b"%%MatrixMarket matrix coordinate real general\n3 3 3\n" + body
    with mock.patch.object(mtx_body, "_read_strict", side_effect=AssertionError("left the fast path")):
        got = with_file(content, read_mtx).toarray()
    np.testing.assert_array_equal(got, [[1.5, 0, 0], [0, -2, 0], [7, 0, 0]])


@pytest.mark.parametrize("data, kept", [
    (b"1 2\n\n  \n% c\n  % c\n\r\n \r\r\n3 4\n", b"1 2\n3 4\n"),
    (b"\r x\n \r \n", b"\r x\n \r \n"),  # a carriage return followed by text is a data line (a wrong one)
    (b"\n" * 1000 + b"5\n", b"5\n"),
    (b"", b""),
])
def test_dropped_lines_are_the_reference_blank_and_comment_lines(data, kept):
    assert drop_blank_and_comment_lines(data) == kept
    reference = b"".join(line + b"\n" for line in data.split(b"\n")[:-1] if not is_comment_or_blank(line))
    assert kept == reference


def test_fast_and_strict_readers_agree_on_a_large_piece():
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(1, 1000, 20000), rng.integers(1, 1000, 20000)
    values = rng.standard_normal(20000) * 10.0 ** rng.integers(-300, 300, 20000)
    data = b"".join(b"%d %d %r\n" % (i, j, float(v)) for i, j, v in zip(rows, cols, values))
    layout = Layout(indices=2, field="real")
    fast = read_fast(data, data.count(b"\n"), layout, (1000, 1000))
    assert fast is not None
    np.testing.assert_array_equal(fast["i0"], rows - 1)
    np.testing.assert_array_equal(fast["i1"], cols - 1)
    np.testing.assert_array_equal(fast["v0"], values)


# --- the shared invalid files through the CLI --------------------------------------------------------

@pytest.mark.parametrize("command", ["info", "solve"])
@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file_exits_4_with_one_line(path, command, tmp_path):
    out = tmp_path / "x.h5"
    result = run_cli([command, path] + (["-o", out] if command == "solve" else []))
    if path.name in ACCEPTED_OVERFLOW:
        assert result.exit_code == 0, result.stderr
        return
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 4, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"matcli: error: {path}: "), result.stderr
    assert not out.exists()


# --- text vectors: the same reader for one column ----------------------------------------------------

def reference_text(path: str) -> np.ndarray:
    """A line-by-line reading of a numeric text file by its grammar (REAL fields, equal widths)."""
    comma = path.endswith(".csv")
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    rows = []
    for line in lines:
        stripped = line.strip(b" \t\r")
        if not stripped or stripped[:1] in (b"#", b"%"):
            continue
        line = line.rstrip(b"\r")
        fields = [f.strip(b" \t") for f in line.split(b",")] if comma else SEPARATOR.split(line.strip(b" \t"))
        if not all(REAL.fullmatch(f) and np.isfinite(float(f)) for f in fields):
            raise InputError(path, "not a finite decimal number")
        if rows and len(fields) != len(rows[0]):
            raise InputError(path, "ragged")
        rows.append([float(f) for f in fields])
    if not rows:
        raise InputError(path, "no numbers")
    array = np.array(rows)
    return array.ravel() if 1 in array.shape else array


@st.composite
def text_vectors(draw) -> tuple[bytes, np.ndarray, bool]:
    """(file, values, whether a leading ``+`` sends it to loadtxt)."""
    values = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
    lines = []
    plus = False
    for value in values:
        token = real_token(repr(value).encode(), draw(st.integers(0, 4)))
        plus |= token.startswith(b"+")
        lines.append(draw(st.sampled_from([b"", b" ", b"\t"])) + token + draw(st.sampled_from([b"", b" ", b"\r"])))
        lines += draw(st.sampled_from([[], [], [b""], [b"# c"], [b"  % c"], [b" \t"]]))
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"])), np.array(values), plus


@SETTINGS
@given(text_vectors(), st.sampled_from([".txt", ".csv"]))
def test_text_vector_reads_exactly_without_loadtxt(case, suffix):
    content, expected, plus = case
    with mock.patch.object(np, "loadtxt", wraps=np.loadtxt) as spy:
        got = with_file(content, read_text_array, suffix)
    np.testing.assert_array_equal(got, expected)
    assert spy.call_count == int(plus)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_vectors(), st.sampled_from([".txt", ".csv"]), st.integers(0, 10**6),
       st.sampled_from(list(b"0123456789 \t\n\r.eE+-%#nanif,_x\x00\x0c")), st.sampled_from(["replace", "insert", "delete"]))
def test_corrupted_text_vector_reads_as_the_grammar_reads_it_or_is_refused(case, suffix, where, byte, action):
    data = bytearray(case[0])
    position = where % (len(data) + 1)
    if action == "insert" or position == len(data):
        data.insert(position, byte)
    elif action == "replace":
        data[position] = byte
    else:
        del data[position]
    ours, reference = outcome(bytes(data), read_text_array, suffix), outcome(bytes(data), reference_text, suffix)
    assert ours[0] == reference[0], (bytes(data), ours, reference)
    if ours[0] == "read":
        np.testing.assert_array_equal(ours[1], reference[1])


@pytest.mark.parametrize("data", [
    b"1 2\n% c\n  % c\n3 4 % inline\n%\n",
    b"% first\n1\n",
    b"1\n \r% not a comment\n",
    b"".join(b"%% %d\n%d\n" % (k, k) for k in range(5000)),  # beyond the search budget: vectorized
])
def test_dropped_comment_lines_are_the_reference_comment_lines(data):
    from matcli.io.mtx_fast import drop_comment_lines

    reference = b"".join(line + b"\n" for line in data.split(b"\n")[:-1]
                         if not line.lstrip(b" ").startswith(b"%"))
    assert drop_comment_lines(data) == reference


def test_text_vector_longer_than_a_piece_reads_exactly_without_loadtxt():
    from matcli.io.mtx_source import PIECE_BYTES

    values = np.round(np.random.default_rng(4).standard_normal(450_000), 6)
    lines = [repr(float(v)).encode() for v in values]
    for k in range(0, len(lines), 1000):
        lines[k] += b"\n# a comment line"
    content = b"\n".join(lines) + b"\n"
    assert len(content) > PIECE_BYTES
    with mock.patch.object(np, "loadtxt", side_effect=AssertionError("left the fast path")):
        got = with_file(content, read_text_array, ".txt")
    np.testing.assert_array_equal(got, values)
