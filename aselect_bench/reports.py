"""Markdown tables for result files."""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[list], floatfmt: str = "{:.2f}") -> str:
    """A GitHub-flavoured Markdown table; floats formatted with ``floatfmt``, ``None`` as a dash."""

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def hfr_row(curve: dict, chosen) -> str:
    """The HFR curve on one line, the chosen timestep in bold: ``0:0.123 50:**0.456** ...``."""
    return " ".join(f"{t}:**{v:.3f}**" if int(t) == int(chosen) else f"{t}:{v:.3f}" for t, v in curve.items())
