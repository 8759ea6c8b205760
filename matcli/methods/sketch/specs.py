"""Registered sketch-regress modes (the family's methods; no heavy imports here).

The sketch itself (auto, countsketch, sparse-sign, srht, gaussian, leverage) is the typed ``--sketch``
option of ``matcli sketch-regress``; sketch sizes, ridge and tolerances are typed options too.
"""

from matcli.core.registry import MethodSpec, ParamSpec

_NNZ = ParamSpec("nnz_per_column", "int", 4, "Nonzeros per column of the sparse-sign sketch.", low=1, high=64)
_REFINE = ParamSpec("refine_steps", "int", 2, "Refinement solves after the warm-started one (refine mode).",
                    low=1, high=10)

SPECS: list[MethodSpec] = [
    MethodSpec(
        family="sketch",
        name="lapack",
        function="matcli.methods.sketch.exact:lapack_lstsq",
        summary="No sketch: exact least squares by LAPACK's SVD (minimum norm, ridge, GCV); any shape, complex, "
                "several right-hand sides; auto's choice for small or such problems.",
    ),
    MethodSpec(
        family="sketch",
        name="precondition",
        function="matcli.methods.sketch.regress:precondition",
        summary="Sketch -> QR -> CGLS (LSQR's iterates, one fused pass over A each) preconditioned by "
                "the sketch, warm-started from sketch-and-solve.",
        params=(_NNZ,),
        constraints=("tall",),
    ),
    MethodSpec(
        family="sketch",
        name="sketch-and-solve",
        function="matcli.methods.sketch.regress:sketch_and_solve",
        summary="Solve the sketched problem only: residual within about (1+eps) of the optimum.",
        params=(_NNZ,),
        constraints=("tall",),
    ),
    MethodSpec(
        family="sketch",
        name="refine",
        function="matcli.methods.sketch.regress:refine",
        summary="Sketch-and-precondition with iterative refinement (SPIR): backward stable.",
        params=(_NNZ, _REFINE),
        constraints=("tall",),
    ),
]
