"""Registered complete methods (no heavy imports here).

Every kernel is called as ``kernel(rows, cols, values, shape, rank=, reg=, bias=, maxiter=,
rtol=, heldout=, clip=, rng=, callback=, **params)`` and returns a factor model
(``U``, ``V``, optional ``mu``, ``row_bias``, ``col_bias``).
"""

from matcli.core.registry import MethodSpec, ParamSpec

_REG_SCALING = ParamSpec("reg_scaling", "str", "count",
                         "ridge weight per row/column: 'count' multiplies reg by its number of observations (ALS-WR)",
                         choices=("count", "none"))
_INIT = ParamSpec("init", "str", "svd", "initial factors: spectral (truncated SVD of the observations) or random",
                  choices=("svd", "random"))

SPECS: list[MethodSpec] = [
    MethodSpec(
        "complete", "als", "matcli.methods.complete.als:als",
        "Alternating least squares, each half-step a few vectorised CG iterations (O(|Omega| k) per sweep).",
        params=(ParamSpec("cg_iters", "int", 3, "CG iterations per half-step (warm-started)", low=1, high=100),
                _REG_SCALING, _INIT),
    ),
    MethodSpec(
        "complete", "als-exact", "matcli.methods.complete.als:als_exact",
        "Alternating least squares with exact stacked (k+1)x(k+1) solves (O(|Omega| k^2) per sweep; small k).",
        params=(_REG_SCALING, _INIT),
    ),
    MethodSpec(
        "complete", "softimpute", "matcli.methods.complete.softimpute:softimpute",
        "Soft-impute: nuclear-norm shrinkage of the sparse-plus-low-rank completed matrix (rank <= k).",
        params=(ParamSpec("power_iters", "int", 1, "subspace iterations per soft-impute step", low=1, high=20),),
    ),
    MethodSpec(
        "complete", "scaledgd", "matcli.methods.complete.scaledgd:scaledgd",
        "ScaledGD(lambda): factored gradient descent preconditioned by (V^T V + lambda I)^-1, spectral start.",
        params=(ParamSpec("step", "float", 0.5, "step size eta", low=1e-6, high=2.0),
                ParamSpec("damping", "float", 0.0,
                          "lambda of the preconditioner, relative to the top singular value of the start",
                          low=0.0, high=10.0)),
    ),
    MethodSpec(
        "complete", "bpmf", "matcli.methods.complete.bpmf:bpmf",
        "Bayesian PMF by Gibbs sampling; predicts with the posterior mean (no --reg: priors are learnt).",
        params=(ParamSpec("alpha", "float", 0.0, "noise precision; 0 = 2.5 / var(values)", low=0.0),
                ParamSpec("burnin", "int", 5, "sweeps discarded before averaging", low=0, high=100000),
                ParamSpec("samples", "int", 40, "sweeps averaged", low=1, high=100000),
                ParamSpec("out_rank", "int", 0,
                          "rank of the written factors: 0 = all samples stacked (exact posterior mean)", low=0)),
    ),
    MethodSpec(
        "complete", "bpmf-implicit", "matcli.methods.complete.bpmf_implicit:bpmf_implicit",
        "Bayesian SVD++ by Gibbs sampling: BPMF with sampled biases and noise precision, and priors whose means "
        "regress the factors on implicit feedback (which entries each row and column has in the training data).",
        params=(ParamSpec("alpha", "float", 0.0, "noise precision; 0 = sampled (Gamma hyperprior)", low=0.0),
                ParamSpec("burnin", "int", 4, "sweeps discarded before averaging", low=0, high=100000),
                ParamSpec("samples", "int", 14, "sweeps averaged", low=1, high=100000),
                ParamSpec("implicit", "str", "both",
                          "sides whose prior mean regresses on implicit feedback: both (flipped SVD++), rows "
                          "(SVD++: the items each user rated), cols, none (BPMF with sampled biases)",
                          choices=("both", "rows", "cols", "none")),
                ParamSpec("lambda_beta", "float", 3.0,
                          "prior precision of the implicit factors relative to the factor precision", low=1e-6,
                          high=1e6),
                ParamSpec("out_rank", "int", 0,
                          "rank of the written factors: 0 = all samples stacked (exact posterior mean)", low=0)),
    ),
    MethodSpec(
        "complete", "robust", "matcli.methods.complete.robust:robust",
        "Robust completion: low rank plus sparse gross outliers, by trimmed ALS with decreasing hard thresholds.",
        params=(ParamSpec("tol", "float", 1e-6,
                          "inlier relative residual ||r_in|| / ||M_in|| required for a positive status; residuals "
                          "below tol * robust scale of the values are never outliers",
                          low=0.0, high=1.0),
                ParamSpec("max_outliers", "float", 0.25,
                          "largest share of any row's or column's entries that may be outliers", low=0.0, high=0.5),
                _REG_SCALING, _INIT),
    ),
]

#: ``--reg`` default of each method (its meaning is in each kernel's docstring); None = no --reg.
DEFAULT_REG = {"als": 0.12, "als-exact": 0.12, "softimpute": 0.3, "scaledgd": 0.0, "robust": 0.0,
               "bpmf": None, "bpmf-implicit": None}

#: ``--maxiter`` default of each method (sweeps or steps).
DEFAULT_MAXITER = {"als": 200, "als-exact": 200, "softimpute": 1000, "scaledgd": 200, "robust": 200, "bpmf": 1000,
                   "bpmf-implicit": 1000}
