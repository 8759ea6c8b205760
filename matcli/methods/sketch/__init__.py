"""sketch kernels."""
