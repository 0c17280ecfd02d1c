"""Analyses over experiments: exhaustive search vs A-SelecT (``compare``), the block x component map (``components``)."""
