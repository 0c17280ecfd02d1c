"""aselect-bench: A-SelecT (HFR timestep selection) for frozen Diffusion Transformer features."""

from aselect_bench.errors import UserError

__all__ = ["UserError", "load_backbone", "high_frequency_ratio", "select_timestep"]
__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing the package stays cheap (no torch until needed)
    if name == "load_backbone":
        from aselect_bench.backbones import load_backbone

        return load_backbone
    if name == "high_frequency_ratio":
        from aselect_bench.hfr import high_frequency_ratio

        return high_frequency_ratio
    if name == "select_timestep":
        from aselect_bench.selectors import select_timestep

        return select_timestep
    raise AttributeError(f"module 'aselect_bench' has no attribute {name!r}")
