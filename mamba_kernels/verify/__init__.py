"""Public names of this kernel family (filled in as its ops land)."""
__all__: list[str] = []
