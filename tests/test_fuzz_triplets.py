"""Property tests of the ratings reader: valid tables read back exactly, any mutation of a valid
file reads or ends in InputError/ResourceError, and the fast path (numpy.loadtxt) never accepts a
chunk that the line-by-line grammar refuses or reads it differently."""

from __future__ import annotations

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcli.core.errors import InputError, ResourceError
from matcli.io import triplets
from matcli.io.guard import InputPolicy, input_policy

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.integers(1, 2**64 - 1)
values = st.floats(allow_nan=False, allow_infinity=False)
stamps = st.integers(-(2**63), 2**63 - 1)
rows = st.lists(st.tuples(ids, ids, values, stamps), min_size=1, max_size=30)


def read_bytes(content: bytes, suffix: str = ".tsv"):
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        with input_policy(InputPolicy(max_memory=64 * 2**20)):
            return triplets.read_triplets(path)
    finally:
        os.unlink(path)


@SETTINGS
@given(rows=rows, separator=st.sampled_from(["\t", ",", " ", "  ", "::"]), timestamps=st.booleans(),
       header=st.booleans(), crlf=st.booleans(), bom=st.booleans(), blank_every=st.integers(0, 5))
def test_valid_tables_read_back_exactly(rows, separator, timestamps, header, crlf, bom, blank_every):
    end = "\r\n" if crlf else "\n"
    lines = ["user item rating stamp".replace(" ", separator)] if header else []
    for k, (user, item, value, stamp) in enumerate(rows):
        fields = [str(user), str(item), repr(value)] + ([str(stamp)] if timestamps else [])
        lines.append(separator.join(fields))
        if blank_every and k % blank_every == 0:
            lines.append("# comment" if k % 2 else "")
    content = (b"\xef\xbb\xbf" if bom else b"") + end.join(lines).encode() + end.encode()
    users, items, vals = read_bytes(content, ".csv" if separator == "," else ".tsv")
    assert users.tolist() == [r[0] for r in rows]
    assert items.tolist() == [r[1] for r in rows]
    assert vals.tolist() == [r[2] for r in rows]


@SETTINGS
@given(rows=rows, data=st.data())
def test_mutated_files_read_or_fail_cleanly(rows, data):
    content = bytearray("".join(f"{u}\t{i}\t{v!r}\n" for u, i, v, _ in rows).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(content)))
        action = data.draw(st.sampled_from(["insert", "replace", "delete"]))
        byte = data.draw(st.sampled_from(list(b"0123456789+-.eE,\t \r\n#\x00\xff_xn")))
        if action == "insert":
            content.insert(position, byte)
        elif position < len(content):
            if action == "replace":
                content[position] = byte
            else:
                del content[position]
    try:
        users, items, vals = read_bytes(bytes(content))
    except (InputError, ResourceError) as exc:
        assert str(exc).startswith(tempfile.gettempdir())
        return
    assert users.size == items.size == vals.size > 0
    assert users.min() >= 1 and items.min() >= 1 and np.isfinite(vals).all()


@SETTINGS
@given(chunk=st.lists(st.sampled_from(["1", "0", "9", "+", "-", ".", "e", "E", " ", "\t", ",", "\r\n", "\n", "12",
                                       "\t3\t", "\t.5e-3", ":", "::", "::4::"]), min_size=1, max_size=40).map("".join),
       separator=st.sampled_from([b"\t", b",", b"::", None]), columns=st.integers(2, 4))
def test_fast_path_accepts_only_what_the_grammar_accepts(chunk, separator, columns):
    data = (chunk + "\n").encode()
    layout = triplets.Layout(separator, columns, 1)
    fast = triplets._fast("f.tsv", data, layout)
    if fast is None:
        return
    _, strict = triplets._strict("f.tsv", data, 1, layout, 2)
    for got, want in zip(fast[:3], strict[:3]):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)
