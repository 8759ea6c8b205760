"""Pure numerical kernels: arrays in, Result out; no paths, clocks, printing or CLI."""
