"""``aselect-bench pretrain``: the demo DiT (see :mod:`aselect_bench.pretrain`)."""

from aselect_bench.pretrain import add_parser, run

__all__ = ["add_parser", "run"]
