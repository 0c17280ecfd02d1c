"""A dry run of a preset's recipe at real size on the machine at hand: shapes, memory, step time, projected cost.

For each task (``fgvc``, ``ade20k``): the preset's backbone at its real size (its weights when the Hugging Face
cache or a ``--backbone`` folder has them, else the real architecture with random weights), the real head, and
real input shapes (the dataset when the data root holds it, else a synthetic batch at the true resolution and
class count). Timed after a warm-up:

- ``fgvc``: ``probe_train`` (training steps: fresh noise, backward through the head only), ``evaluate`` (one
  evaluation batch), ``hfr_scan`` (one calibration batch at two candidates);
- ``ade20k``: ``upernet_train`` (training steps at the real crop), ``inference`` (one evaluation image, sliding
  window where the preset slides), ``hfr_scan``.

The warm-up is one training step (at the measured batch on CUDA; on a CPU at the head's smallest batch, which
also measures memory); the evaluation and scan stages run the backbone and head paths it warmed. Seconds per
image are projected to the recipe's batch, epochs and split sizes (:mod:`aselect_bench.analyses.projection`).

With a :class:`Plan` (``--gpus``), also the GPU-hours and wall-clock on that many GPUs, projected from FLOPs
(:mod:`~aselect_bench.analyses.estimate.gpu`): a projection, not a measurement. ``--flops-only``, or a registered
model too large for this machine's memory, gives that projection alone.
"""

from aselect_bench.analyses.estimate.gpu import (
    GPUS,
    FlopCounts,
    Plan,
    count_ade20k,
    count_fgvc,
    gpu_projection,
    memory_shortfall,
    project,
)
from aselect_bench.analyses.estimate.inputs import Loaded, cached_weights, load
from aselect_bench.analyses.estimate.report import (
    ade20k_projection,
    fgvc_by_dataset,
    fgvc_projection,
    fmt_hours,
    gpu_line,
    render,
    scan_projection,
    write_estimate,
)
from aselect_bench.analyses.estimate.run import run_estimate, task_record
from aselect_bench.analyses.estimate.stages import (
    TASKS,
    Stage,
    estimate_ade20k,
    estimate_fgvc,
    measure,
    warm_up,
)

__all__ = ["GPUS", "FlopCounts", "Plan", "count_ade20k", "count_fgvc", "gpu_projection", "memory_shortfall",
           "project", "fgvc_by_dataset", "gpu_line", "Loaded", "cached_weights", "load", "ade20k_projection", "fgvc_projection", "fmt_hours", "render",
           "scan_projection", "write_estimate", "run_estimate", "task_record", "TASKS", "Stage", "estimate_ade20k",
           "estimate_fgvc", "measure", "warm_up"]
