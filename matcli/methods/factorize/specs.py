"""Registered factorize methods (no heavy imports here).

A method is named ``<kind>-<method>`` (``svd-randomized``, ``lu-sparse`` ...): ``--kind`` picks
the factorization, ``--method`` the algorithm within it; ``matcli methods factorize`` lists them.
Through ``matcli factorize`` every method sees the matrix in float64, or complex128 when complex
(the job converts float32, complex64, integer and bool input once; ``problem.compute_dtype``);
only ``--param precision=float32`` of the randomized SVDs iterates in single precision.
"""

from matcli.core.registry import MethodSpec, ParamSpec

_M = "matcli.methods.factorize"

KINDS = ("svd", "nmf", "cur", "qr", "lu", "cholesky", "ldl", "eig", "rpca")

_STOP_TOL = ParamSpec("stop_tol", "float", 0.0,
                      "stop early when the top-k Ritz values change by less than this (relative); 0 = run all iterations",
                      low=0.0, high=1.0)
_PRECISION = ParamSpec("precision", "str", "float64",
                       "arithmetic of the iteration: float32 moves half the bytes per product with A "
                       "(singular values to ~1e-6 relative; fixed --rank only); outputs are float64",
                       choices=("float64", "float32"))
_NMF_INIT = ParamSpec("init", "str", "auto",
                      "initial factors (auto: nndsvda when --rank <= min(m, n), else random, as scikit-learn)",
                      choices=("auto", "nndsvda", "nndsvd", "random"))
_ORDERING = ("COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL")
_HERMITIAN = ParamSpec("hermitian", "str", "auto",
                       "use the symmetric/Hermitian solver: auto detects symmetry (max|A-A^H| <= 1e-12 max|A|)",
                       choices=("auto", "yes", "no"))

SPECS: list[MethodSpec] = [
    MethodSpec(
        "factorize", "svd-randomized", f"{_M}.rsvd:randomized_svd",
        "randomized SVD: range finder + re-orthonormalised power iterations (Halko-Martinsson-Tropp); "
        "--rank auto --tol t grows the basis blockwise until the error indicator meets t (randQB_EI); on row "
        "blocks (--backend dask, or an input beyond half the budget) every tall basis is a TSQR over the blocks "
        "(2q+3 passes over A), certificate measured from A",
        params=(_STOP_TOL, _PRECISION,
                ParamSpec("block_size", "int", 10, "columns added per step with --rank auto", low=1),
                ParamSpec("max_rank", "int", 0, "cap on the rank with --rank auto (0 = min(m, n))", low=0)),
    ),
    MethodSpec(
        "factorize", "svd-block-krylov", f"{_M}.rsvd:block_krylov_svd",
        "randomized block Krylov SVD (Musco-Musco): Krylov depth = --power-iters, block = rank + oversample; "
        "on row blocks the iterates' TSQR bases side by side (2q+4 passes over A)",
        params=(_STOP_TOL, _PRECISION),
    ),
    MethodSpec(
        "factorize", "svd-lanczos", f"{_M}.gkl:lanczos_svd",
        "Golub-Kahan-Lanczos bidiagonalization, one-sided reorthogonalization of the shorter basis "
        "(Simon-Zha), thick restarts (Baglama-Reichel); stops when every Ritz triplet's residual is <= --tol "
        "(default 1e-8) times its singular value; sparse products on row blocks in parallel; on row blocks "
        "(--backend dask, or streamed under --max-memory) thick-restart Lanczos on A^H A, one pass over A "
        "per step (steps + 2 passes)",
        params=(ParamSpec("basis", "int", 0, "basis vectors before a thick restart (0 = max(3k, k + 30))", low=0),),
        constraints=("rank = min(m, n): dense SVD",),
    ),
    MethodSpec("factorize", "svd-arpack", f"{_M}.tsvd:lanczos_svd",
               "truncated SVD by implicitly restarted Lanczos (scipy svds, ARPACK); --tol is svds' tol; "
               "triplets checked, a rank-deficient remainder completed",
               constraints=("rank < min(m, n) (complex: rank <= min(m, n) - 2)",)),
    MethodSpec("factorize", "svd-propack", f"{_M}.tsvd:lanczos_svd",
               "truncated SVD by Lanczos bidiagonalisation (scipy svds, PROPACK); --tol is svds' tol; "
               "triplets checked, a rank-deficient remainder completed",
               constraints=("rank <= min(m, n)",)),
    MethodSpec("factorize", "svd-tsqr", f"{_M}.tsqr_svd:tsqr_svd",
               "exact truncated SVD of a tall matrix read in row blocks (HDF5, Zarr, .npy): TSQR, the SVD "
               "of R, the left vectors block by block, triplets certified from A; with --backend dask the "
               "workers read the blocks; --rank k or --rank auto --tol",
               constraints=("m >= n", "n <= 2000", "A in row blocks")),
    MethodSpec("factorize", "svd-dense", f"{_M}.tsvd:dense_svd",
               "dense SVD (LAPACK gesdd), truncated to --rank k or optimally to --tol; sparse input must be small",
               constraints=("small",)),
    MethodSpec(
        "factorize", "svd-update", f"{_M}.update:update_svd",
        "update a truncated SVD (--update prev.h5) after appending rows/columns (Zha-Simon; randomized "
        "complement for many appended vectors, after Vecharynski-Saad / Deng et al.)",
        params=(ParamSpec("complement_rank", "int", 0,
                          "rank of the approximation of the appended vectors' component outside the current "
                          "subspace: 0 = exact thin QR while p <= 2 (2 rank + 10), else a randomized rank "
                          "2 rank + 10; l > 0: randomized rank l (exact when l >= p)", low=0),),
    ),
    MethodSpec(
        "factorize", "nmf-hals", f"{_M}.nmf:nmf_hals",
        "NMF A ~ W H by hierarchical alternating least squares (coordinate descent on columns of W / rows of H)",
        params=(_NMF_INIT,), constraints=("nonnegative",),
    ),
    MethodSpec(
        "factorize", "nmf-mu", f"{_M}.nmf:nmf_mu",
        "NMF A ~ W H by Lee-Seung multiplicative updates (Frobenius loss)",
        params=(_NMF_INIT,), constraints=("nonnegative",),
    ),
    MethodSpec(
        "factorize", "nmf-robust", f"{_M}.nmf:nmf_robust",
        "robust NMF: correntropy (Welsch) loss by half-quadratic reweighting of columns (samples) or entries",
        params=(_NMF_INIT,
                ParamSpec("level", "str", "column",
                          "reweight whole columns (sparse-friendly) or single entries (dense, small)",
                          choices=("column", "entry")),
                ParamSpec("sigma_scale", "float", 1.0,
                          "kernel width as a multiple of the RMS residual (smaller = more robust)", low=1e-6)),
        constraints=("nonnegative",),
    ),
    MethodSpec(
        "factorize", "cur-leverage", f"{_M}.cur:cur_leverage",
        "CUR with columns/rows chosen by rank-k leverage scores (top scores or random sampling); U = C^+ A R^+",
        params=(ParamSpec("sampling", "str", "top", "take the highest scores or sample proportionally",
                          choices=("top", "random")),
                ParamSpec("extra", "int", 0, "columns and rows selected beyond --rank", low=0)),
    ),
    MethodSpec(
        "factorize", "cur-pivoted-qr", f"{_M}.cur:cur_pivoted_qr",
        "CUR with columns/rows chosen by QR with column pivoting on the top-k singular vectors; U = C^+ A R^+",
        params=(ParamSpec("extra", "int", 0, "columns and rows selected beyond --rank", low=0),),
    ),
    MethodSpec("factorize", "qr-dense", f"{_M}.dense:qr",
               "dense QR A[:, P] = Q R (LAPACK geqp3 with column pivoting)",
               params=(ParamSpec("pivoting", "bool", True, "column pivoting"),), constraints=("small",)),
    MethodSpec("factorize", "lu-dense", f"{_M}.dense:lu", "dense LU A[P] = L U with partial pivoting (getrf)",
               constraints=("small",)),
    MethodSpec("factorize", "lu-sparse", f"{_M}.sparse:lu_sparse",
               "sparse LU A[P][:, Q] = L U (SuperLU); factors written as sparse matrices",
               params=(ParamSpec("ordering", "str", "COLAMD", "fill-reducing column ordering", choices=_ORDERING),
                       ParamSpec("pivot_threshold", "float", 1.0, "partial pivoting threshold", low=0.0, high=1.0)),
               constraints=("square",)),
    MethodSpec("factorize", "cholesky-dense", f"{_M}.dense:cholesky", "dense Cholesky A = L L^H (potrf)",
               constraints=("square", "spd", "small")),
    MethodSpec("factorize", "cholesky-sparse", f"{_M}.sparse:cholesky_sparse",
               "sparse Cholesky A[P][:, P] = L L^H (SuperLU symmetric mode, positive pivots checked; CHOLMOD "
               "where installed)",
               params=(ParamSpec("ordering", "str", "MMD_AT_PLUS_A", "symmetric fill-reducing ordering (SuperLU)",
                                 choices=_ORDERING),
                       ParamSpec("backend", "str", "auto", "auto (CHOLMOD where installed, else SuperLU), superlu, "
                                 "cholmod (pip install 'matcli[cholmod]')", choices=("auto", "superlu", "cholmod"))),
               constraints=("square", "spd")),
    MethodSpec("factorize", "ldl-dense", f"{_M}.dense:ldl",
               "dense LDL^T with Bunch-Kaufman pivoting (sytrf/hetrf), symmetric indefinite",
               constraints=("square", "symmetric", "small")),
    MethodSpec("factorize", "eig-dense", f"{_M}.dense:eig",
               "full eigendecomposition (eigh for symmetric/Hermitian, eig otherwise)",
               params=(_HERMITIAN,), constraints=("square", "small")),
    MethodSpec("factorize", "eig-arpack", f"{_M}.sparse:eig_arpack",
               "--rank k eigenpairs by ARPACK (eigsh for symmetric/Hermitian, eigs otherwise)",
               params=(_HERMITIAN,
                       ParamSpec("which", "str", "LM", "part of the spectrum (LA/SA symmetric only, LR/SR general only)",
                                 choices=("LM", "SM", "LA", "SA", "LR", "SR"))),
               constraints=("square", "rank < n - 1")),
    MethodSpec("factorize", "rpca-ialm", f"{_M}.robust_pca:robust_pca_ialm",
               "robust PCA A = L + S (low rank plus sparse): principal component pursuit min ||L||_* + lam ||S||_1 "
               "by inexact ALM (Lin-Chen-Ma); stops when ||A - L - S||_F <= --rtol ||A||_F (default 1e-7); "
               "writes L as U, s, Vt and S as a sparse matrix",
               params=(ParamSpec("lam", "float", 0.0, "weight of ||S||_1 (0 = 1 / sqrt(max(m, n)), Candes et al.)",
                                 low=0.0),),
               constraints=("dense (sparse input densified when small)",)),
    MethodSpec("factorize", "rpca-subgradient", f"{_M}.robust_pca:robust_pca_subgradient",
               "robust PCA by the sub-gradient method on ||U V^H - A||_1 from a small random start with "
               "geometrically decaying steps (Ma-Fattahi); --rank k bounds rank(L) (default min(m, n): "
               "over-parameterised, slower); S = the residual entries beyond 5 robust scales",
               params=(ParamSpec("init_scale", "float", 1e-3, "size of the random start relative to sqrt(||A||_2)",
                                 low=1e-12, high=1.0),
                       ParamSpec("step", "float", 0.5, "first step: its relative change of L (eta_0 ||G||_2)",
                                 low=1e-6, high=10.0),
                       ParamSpec("decay", "float", 0.0,
                                 "step factor per iteration (0 = the step falls by rtol / 10 over --maxiter)",
                                 low=0.0, high=1.0)),
               constraints=("dense (sparse input densified when small)",)),
]

#: Methods of each kind, in the order ``--method`` lists them.
METHODS: dict[str, tuple[str, ...]] = {
    kind: tuple(s.name[len(kind) + 1:] for s in SPECS if s.name.startswith(kind + "-")) for kind in KINDS
}
