"""factorize kernels."""
