"""Pure-PyTorch references: readable, float64-capable. Tests and benchmarks import them."""
