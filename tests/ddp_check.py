"""Run by tests/test_ddp.py in a subprocess: one HFR selection + probe training with N CPU processes.

Usage: PYTHONPATH=<repo> python tests/ddp_check.py DEVICES OUT.json
"""

from __future__ import annotations

import json
import sys

import lightning as L

from aselect_bench import load_backbone
from aselect_bench.callbacks import HFRTimestepSelector
from aselect_bench.tasks.classification import ClassificationTask
from tests.conftest import BlobsDataModule


def main(devices: int, out: str) -> None:
    L.seed_everything(0, verbose=False)
    datamodule = BlobsDataModule(per_class=10, batch_size=18 // devices)  # 18 training images: one full batch
    task = ClassificationTask(load_backbone("tiny-dit", pretrained=False), num_classes=3, tap="blocks.1.out",
                              lr=5e-2, warmup_fraction=0.0)
    selector = HFRTimestepSelector(num_images=8, candidates=[0, 300, 999], progress=False)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_epochs=4,
                        callbacks=[selector], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, deterministic=True)
    trainer.fit(task, datamodule=datamodule)
    metrics = trainer.validate(task, datamodule=datamodule, verbose=False)[0]
    if trainer.global_rank == 0:
        with open(out, "w") as f:
            json.dump({"timestep": task.timestep, "curve": selector.choice.scores, "val_top1": metrics["val/top1"],
                       "val_loss": metrics["val/loss"], "forwards": selector.result.scan.forwards}, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
