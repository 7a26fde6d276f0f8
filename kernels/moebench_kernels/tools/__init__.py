"""Benchmarking and tuning on top of the kernels. Unlike the rest of moebench.kernels, these may import
moebench.models (the backends they compare against and the Assignment they build inputs with)."""
