"""File formats only: MatrixMarket, HDF5, ratings triplets, spec parsing, atomic writes."""
