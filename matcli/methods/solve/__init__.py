"""solve kernels."""
