"""Core types shared by every layer: errors, results, registry, timing, random numbers."""
