"""Experiment trackers: every run streams its train and eval rows, expert load per layer, resolved config and
final summary to the tools researchers already watch (suite field `track: [tensorboard, wandb]`, or
`moebench run --track NAME`). metrics.jsonl stays the record; a tracker only mirrors it.

A tracker is one small registered class (MLflow or Aim would be one more):

    @TRACKERS.register("name")
    class MyTracker(Tracker):
        package = "pip-package"          # imported before training, so a missing one fails validation (exit 2)
        def __init__(self, spec, run_dir, start_step): ...
        def scalars(self, step, values: dict[str, float]): ...
        def expert_load(self, step, load: np.ndarray): ...       # [layers, experts] load shares, one per eval
        def finish(self, summary: dict): ...

Only rank 0 tracks (a distributed job's rows are already global numbers there).
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import yaml

from moebench.errors import UserError
from moebench.plan import RunSpec
from moebench.registry import Registry

TRACKERS: Registry[type] = Registry("tracker")
TB_DIR, WANDB_DIR = "tb", "wandb"  # inside the run directory
# row fields that are bookkeeping, not curves
_NOT_SCALARS = {"kind", "step", "experts"}


def check_trackers(names) -> None:
    """UserError (exit 2, before anything is written) for an unknown tracker or one whose package is missing."""
    for name in names:
        cls = TRACKERS.get(name)
        if cls is None:
            raise UserError(f"track: {TRACKERS.unknown(name)}")
        if importlib.util.find_spec(cls.package) is None:
            raise UserError(f"track: {name} needs the {cls.package} package: pip install 'moebench[{name}]'")


class Tracker:
    package = ""

    def __init__(self, spec: RunSpec, run_dir: Path, start_step: int):
        self.spec, self.run_dir = spec, Path(run_dir)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def expert_load(self, step: int, load: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self, summary: dict) -> None:
        raise NotImplementedError


def row_scalars(row: dict) -> dict[str, float]:
    """A metrics.jsonl row as tracker scalars: `train/loss`, `eval/val_loss`, `eval/experts_entropy`, ..."""
    kind = row["kind"]
    out = {f"{kind}/{k}": float(v) for k, v in row.items()
           if k not in _NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in (row.get("experts") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{kind}/experts_{k}"] = float(v)
        elif isinstance(v, dict):  # the load metrics over layers: experts_max_vio_p90, ...
            out.update({f"{kind}/experts_{k}_{q}": float(x) for q, x in v.items() if isinstance(x, (int, float))})
    return out


def load_matrix(experts: dict | None) -> np.ndarray | None:
    """[layers, experts] load shares of an eval row's expert statistics (None for a dense model)."""
    layers = (experts or {}).get("layers")
    return np.array([layer["load"] for layer in layers], dtype=np.float32) if layers else None


def flat_summary(summary: dict, prefix: str = "") -> dict[str, float | str]:
    """Nested summary.json -> {"final/val_loss": ..., "params/total": ...}: numbers and strings only."""
    out: dict = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_summary(v, f"{key}/"))
        elif isinstance(v, (int, float, str)) and not isinstance(v, bool):
            out[key] = v
    return out


class Trackers:
    """The run's trackers behind one call per training row; empty (and free) when the suite tracks nothing."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    def log(self, rows: list[dict]) -> None:
        for row in rows:
            load = load_matrix(row.get("experts")) if row["kind"] == "eval" else None
            for t in self.trackers:
                t.scalars(row["step"], row_scalars(row))
                if load is not None:
                    t.expert_load(row["step"], load)

    def finish(self, summary: dict) -> None:
        for t in self.trackers:
            t.finish(summary)


def open_trackers(spec: RunSpec, run_dir: Path, start_step: int, rank0: bool = True) -> Trackers:
    if not rank0 or not spec.track:
        return Trackers([])
    check_trackers(spec.track)
    return Trackers([TRACKERS[name](spec, run_dir, start_step) for name in spec.track])


def heatmap(load: np.ndarray, cell: int = 16) -> np.ndarray:
    """[3, H, W] image in [0, 1] of a [layers, experts] load matrix, each share relative to the even share 1/E:
    white = even, red = overloaded (2x or more), blue = starved (0)."""
    rel = np.clip(load * load.shape[1] / 2.0, 0.0, 1.0)  # 0 -> 0, even -> 0.5, >= 2x -> 1
    r = np.where(rel >= 0.5, 1.0, 2 * rel)
    b = np.where(rel <= 0.5, 1.0, 2 * (1 - rel))
    g = 1.0 - 2 * np.abs(rel - 0.5)
    img = np.stack([r, g, b]).astype(np.float32)
    return img.repeat(cell, axis=1).repeat(cell, axis=2)


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    """Event files under <run>/tb/: `tensorboard --logdir results/<suite>` shows every run of a suite."""

    package = "tensorboard"

    def __init__(self, spec, run_dir, start_step):
        super().__init__(spec, run_dir, start_step)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run redoes the steps after its checkpoint (rows up to the checkpoint's step are
        # kept in metrics.jsonl); TensorBoard drops their old events
        self.w = SummaryWriter(str(self.run_dir / TB_DIR), purge_step=start_step + 1 if start_step else None)
        self.w.add_text("config", _code(yaml.safe_dump(spec.to_dict(), sort_keys=False)), start_step)

    def scalars(self, step, values):
        for k, v in values.items():
            self.w.add_scalar(k, v, step)
        self.w.flush()

    def expert_load(self, step, load):
        self.w.add_image("eval/expert_load", heatmap(load), step)
        for i, row in enumerate(load):
            self._load_hist(i, row, step)

    def _load_hist(self, i: int, row: np.ndarray, step: int) -> None:
        """Layer i's load as a histogram over expert index: bucket e holds expert e's load share."""
        edges = np.arange(len(row) + 1, dtype=np.float64) - 0.5
        self.w.add_histogram_raw(f"eval/expert_load_layer{i}", min=0.0, max=float(len(row) - 1), num=len(row),
                                 sum=float((np.arange(len(row)) * row).sum()),
                                 sum_squares=float((np.arange(len(row)) ** 2 * row).sum()),
                                 bucket_limits=edges[1:].tolist(), bucket_counts=row.astype(np.float64).tolist(),
                                 global_step=step)

    def finish(self, summary):
        self.w.add_text("summary", _code(json.dumps(summary, indent=2, sort_keys=True, default=str)),
                        summary.get("steps", 0))
        self.w.close()


@TRACKERS.register("wandb")
class WandbTracker(Tracker):
    """A W&B run in offline mode (unless WANDB_MODE says otherwise) under <run>/wandb/; `wandb sync` uploads it."""

    package = "wandb"

    def __init__(self, spec, run_dir, start_step):
        super().__init__(spec, run_dir, start_step)
        import wandb

        self.wandb = wandb
        # wandb puts its files in <dir>/wandb/offline-run-*; offline unless the user chose a mode (WANDB_MODE)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", f"moebench-{spec.suite}"),
                              dir=str(self.run_dir), mode=os.environ.get("WANDB_MODE", "offline"),
                              name=f"{spec.variant}-seed{spec.seed}", group=spec.variant,
                              id=f"{spec.suite}-{spec.variant}-s{spec.seed}-{spec.config_hash}"[:128],
                              resume="allow", config=spec.to_dict(), reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))

    def scalars(self, step, values):
        self.run.log(values, step=step)

    def expert_load(self, step, load):
        self.run.log({"eval/expert_load": self.wandb.Image(heatmap(load).transpose(1, 2, 0))}, step=step)

    def finish(self, summary):
        self.run.summary.update(flat_summary(summary))
        self.run.finish()


def _code(text: str) -> str:
    # TensorBoard renders text as markdown: indent it as a code block so YAML / JSON keep their layout
    return "\n".join("    " + line for line in text.splitlines())
