"""Model zoo (planned): the distilled Llama/Mamba hybrid, checkpoint loading, generation,
speculative decoding and distillation. Nothing here yet; the kernels come first."""
