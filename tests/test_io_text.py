"""matcli.io.text: numeric text arrays read strictly (#16)."""

from __future__ import annotations

import numpy as np
import pytest

from matcli.core.errors import InputError, ResourceError
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.text import read_text_array


def write(tmp_path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize("name, content, expected", [
    ("col.txt", b"1\n2.5\n-3e2\n", [1.0, 2.5, -300.0]),
    ("row.txt", b"1 2.5\t-3e2\n", [1.0, 2.5, -300.0]),
    ("one.dat", b"  .5  \n", [0.5]),
    ("m.tsv", b"1\t2\n3\t4\n", [[1.0, 2.0], [3.0, 4.0]]),
    ("m.csv", b"1, 2\n3 ,4\n", [[1.0, 2.0], [3.0, 4.0]]),
    ("comments.txt", b"# header\n% matlab\n\n1 2\n   # indented\n3 4\n", [[1.0, 2.0], [3.0, 4.0]]),
    ("crlf.txt", b"1 2\r\n3 4\r\n", [[1.0, 2.0], [3.0, 4.0]]),
    ("no_final_newline.txt", b"+1\n2.", [1.0, 2.0]),
])
def test_valid_text_arrays_read_like_loadtxt(tmp_path, name, content, expected):
    np.testing.assert_array_equal(read_text_array(write(tmp_path, name, content)), np.array(expected))


@pytest.mark.parametrize("name, content, message", [
    ("a.txt", b"1 2\n3 4,5\n", "line 2: field 2 '4,5' is not a decimal number"),
    ("a.csv", b"1,2\n3;4\n", "line 2: field 1 '3;4' is not a decimal number"),
    ("b.txt", b"1\n1.5.3\n", "line 2: field 1 '1.5.3' is not a decimal number"),
    ("c.txt", b"1\n2e5x\n", "line 2: field 1 '2e5x' is not a decimal number"),
    ("d.txt", b"1_000\n", "line 1: field 1 '1_000' is not a decimal number"),
    ("e.txt", b"1\n-inf\n", "line 2: field 1 '-inf' is not a decimal number"),
    ("f.txt", b"1 2\n3 4 5\n", "line 2: 3 fields, the rows above have 2"),
    ("g.txt", b"1\n1e400\n", "line 2: field 1 '1e400' overflows float64"),
    ("h.txt", b"\xef\xbb\xbf1\n", "line 1: field 1"),
    ("i.txt", b"1\r2\n", "line 1: field 1 '1\\r2' is not a decimal number"),
    ("j.csv", b"1,2,\n", "line 1: field 3 '' is not a decimal number"),
    ("k.txt", b"\n\n", "no numbers"),
])
def test_malformed_text_array_names_the_line(tmp_path, name, content, message):
    with pytest.raises(InputError) as err:
        read_text_array(write(tmp_path, name, content))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / name))


def test_text_array_larger_than_the_budget_is_a_resource_error(tmp_path):
    path = write(tmp_path, "big.txt", b"1\n" * 2000)
    with input_policy(InputPolicy(max_memory=4096)), pytest.raises(ResourceError, match="memory budget"):
        read_text_array(path)
    with input_policy(InputPolicy(max_memory=2**20)):
        assert read_text_array(path).shape == (2000,)
