"""Datasets from the Hugging Face hub (through ``datasets``), as ``[(image, label)]`` items."""

from __future__ import annotations

import os

from aselect_bench.errors import UserError


def read_hub_split(hub_id: str, image_column: str, label_column: str, split: str):
    """``[(PIL image, label)]`` of ``split`` of ``hub_id`` (offline: only from the local cache, else a clear error)."""
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise UserError("reading a hub dataset needs the 'datasets' package") from err
    names = {"train": ["train"], "val": ["validation", "val"], "test": ["test"]}[split]
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    last = None
    for name in names:
        try:
            table = datasets.load_dataset(hub_id, split=name, download_mode="reuse_dataset_if_exists")
            return [(row[image_column], int(row[label_column])) for row in table]
        except ValueError as err:  # an unknown split name: try the next spelling
            last = err
        except Exception as err:  # noqa: BLE001 - network/cache failures become one clear message
            raise UserError(
                f"cannot load hub dataset {hub_id!r} split {name!r} ({type(err).__name__}); "
                f"{'HF_HUB_OFFLINE is set and it is not in the local cache' if offline else 'the hub is unreachable'}"
                f": download it where the hub is reachable (HF_HOME) or use the dataset's files with --data-root"
            ) from None
    raise UserError(f"hub dataset {hub_id!r} has no {split} split ({last})")
