"""complete kernels."""
