"""SuperLU's C messages never reach stderr: an allocation failure is one MemoryError (exit 7)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import scipy.sparse as sp

from matcli.core.superlu import splu

SCRIPT = """
import resource, numpy as np, scipy.sparse as sp
from matcli.core.superlu import splu
rng = np.random.default_rng(0)
n, k = 100000, 400000
A = (sp.coo_matrix((rng.standard_normal(k), (rng.integers(0, n, k), rng.integers(0, n, k))), shape=(n, n))
     + sp.eye(n)).tocsc()
limit = 700 * 2**20 + int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    splu(A, permc_spec='NATURAL')
except MemoryError as exc:
    print('MemoryError:', exc)
"""


def test_allocation_failure_is_a_memory_error_with_the_message_and_silent_stderr():
    """Without fill-reducing ordering the LU of a random sparse matrix fills in far beyond 700 MB."""
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("MemoryError: SuperLU ran out of memory"), run.stdout
    assert run.stderr == ""


def test_a_factorization_that_fits_is_unchanged():
    A = sp.csc_matrix(sp.diags([1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(splu(A).solve(np.ones(3)), [1.0, 0.5, 0.25])
