"""Where ``mcie train``'s curves go besides ``log.jsonl``: TensorBoard event files in
``RUN/logs``, Weights & Biases, or nowhere (``--report-to``, the diffusers convention).

Our own small seam rather than accelerate's trackers: accelerate's TensorBoard tracker nests
its events under a run-name folder and writes the hyper-parameters into a second, timestamped
one; here one run folder has one ``logs/`` folder that ``tensorboard --logdir RUN/logs`` reads.
A resumed run purges the events written after its checkpoint (``purge_step``), so the curves
continue where the weights do.

Tags: ``train/loss``, ``train/lr``, ``gates/saca_mean_abs``, ``gates/bcca_mean_abs`` (the mean
|gate| over the layers: whether SACA and BCCA are switched on), ``val/region_l1``,
``val/background_l1``, the image ``val/edits`` (rows of source | edited | target) and the text
``val/instructions`` (each row's instruction); the text ``config`` holds the run's record.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from PIL import Image

LOG_DIR = "logs"


class RunTracker:
    """No tracker (``--report-to none``); the base of the others."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log each ``tag: value`` at ``step``."""

    def image(self, tag: str, image: Image.Image, caption: str, step: int) -> None:
        """Log ``image`` with its ``caption`` (the instructions it shows) at ``step``."""

    def close(self) -> None:
        """Flush and close."""


class TensorBoardTracker(RunTracker):
    """Event files in ``folder`` (torch's ``SummaryWriter``)."""

    def __init__(self, folder: str, record: dict[str, Any], start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a run resumed at step S drops the events its predecessor wrote after
        # its checkpoint (steps > S); S itself is the checkpoint's, kept
        first = start_step + 1 if start_step else 0
        self.writer = SummaryWriter(folder, purge_step=first or None)
        text = "```\n" + json.dumps(record, indent=2, sort_keys=True) + "\n```"
        self.writer.add_text("config", text, first)  # not before the purge step: that reads as a restart

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def image(self, tag: str, image: Image.Image, caption: str, step: int) -> None:
        self.writer.add_image(tag, np.asarray(image.convert("RGB")), global_step=step, dataformats="HWC")
        self.writer.add_text(tag.rsplit("/", 1)[0] + "/instructions", caption, global_step=step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker(RunTracker):
    """A Weights & Biases run (offline unless the user has logged in), its files under the run
    folder."""

    def __init__(self, out: str, record: dict[str, Any], start_step: int = 0) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project="mcie", dir=out, config=record["config"], resume="allow")

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def image(self, tag: str, image: Image.Image, caption: str, step: int) -> None:
        self.run.log({tag: self.wandb.Image(image, caption=caption)}, step=step)

    def close(self) -> None:
        self.run.finish()


def open_tracker(report_to: str, out: str, record: dict[str, Any], start_step: int = 0) -> RunTracker:
    """The tracker of ``--report-to`` for the run folder ``out``."""
    if report_to == "tensorboard":
        return TensorBoardTracker(os.path.join(out, LOG_DIR), record, start_step)
    if report_to == "wandb":
        return WandbTracker(out, record, start_step)
    return RunTracker()


def gate_means(gates: dict[str, float]) -> dict[str, float]:
    """``gates/saca_mean_abs`` and ``gates/bcca_mean_abs`` of :meth:`MCIEEditor.gates`'s values
    (a branch switched off by an ablation has no gates and no tag)."""
    out = {}
    for kind in ("saca", "bcca"):
        values = [abs(v) for k, v in gates.items() if k.endswith(f"{kind}_gate")]
        if values:
            out[f"gates/{kind}_mean_abs"] = float(np.mean(values))
    return out
