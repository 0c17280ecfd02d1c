"""``aselect-bench fit|validate|test``: LightningCLI over the tasks and datamodules, YAML configs.

Config files may start with ``_base_: other.yaml`` (inheritance, resolved before LightningCLI reads
them), so ``configs/fgvc/cub.yaml`` only says what differs from ``configs/fgvc/base.yaml``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI

from aselect_bench.callbacks import HFRTimestepSelector
from aselect_bench.config import load_yaml


class AselectCLI(LightningCLI):
    """LightningCLI with the HFR timestep selector as a configurable callback (``--hfr.*``)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(HFRTimestepSelector, "hfr")


def resolve_configs(argv: list[str], tmp_dir: Path) -> list[str]:
    """Replace each ``--config FILE`` that uses ``_base_`` by a merged copy in ``tmp_dir``."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        path = argv[i + 1] if arg in ("--config", "-c") and i + 1 < len(argv) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and Path(path).is_file() and "_base_" in Path(path).read_text():
            merged = tmp_dir / f"merged-{len(out)}-{Path(path).name}"
            merged.write_text(yaml.safe_dump(load_yaml(Path(path))))
            out += ["--config", str(merged)]
            i += 1 if arg.startswith("--config=") else 2
            continue
        out.append(arg)
        i += 1
    return out


def run_lightning_cli(argv: list[str]) -> None:
    """``--resume`` continues training from the run's ``last.ckpt`` (Lightning's ``--ckpt_path last``)."""
    argv = [a for arg in argv for a in (["--ckpt_path", "last"] if arg == "--resume" else [arg])]
    with tempfile.TemporaryDirectory(prefix="aselect-cfg-") as tmp:
        AselectCLI(subclass_mode_model=True, subclass_mode_data=True, args=resolve_configs(argv, Path(tmp)),
                   save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "aselect-bench"})
