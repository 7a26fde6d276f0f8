"""RunSpec: one (variant, seed) of a plan, with frozen, typed model / corpus / train / eval specs and a content
hash of everything that changes what the run computes (the resume and skip key)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from moebench.config.schema import CorpusSpec, EvalSpec, InferenceSpec, TrainSpec
from moebench.io import run_dir, run_key
from moebench.models.spec import ModelConfig

from .plan import Plan, PlanRow

# fields that change how often a run saves, not what it computes
NOT_HASHED = {"train": ("checkpoint_every",)}
# fields added after results existed: at their default (the behaviour before them) they are left out of the
# hash, so finished runs keep their keys; any other value is hashed like every field
HASHED_IF_SET = {"train": {"grad_accum_steps": 1, "warmup_fraction": None},
                 "moe": {"score": "softmax", "bias_update_rate": 0.0, "lb_scope": "micro_batch", "null_experts": 0}}


@dataclass(frozen=True)
class RunSpec:
    suite: str
    variant: str
    seed: int
    model: ModelConfig
    corpus: CorpusSpec
    train: TrainSpec  # seeds = [seed]; steps and tokens resolved
    eval: EvalSpec  # batch_size resolved
    plan: PlanRow  # this variant's plan row
    inference: Optional[InferenceSpec] = None  # measure the trained model's forward speed
    track: tuple[str, ...] = ()  # experiment trackers it streams to (not hashed: they change no number)
    size: Optional[str] = None  # a sweep's size (None outside a sweep): part of the run's key and hash
    config_hash: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """Plain data (config.yaml): the canonical dump the hash is computed from."""
        dump = lambda spec: spec.model_dump(mode="json") if spec is not None else None  # noqa: E731
        return {"suite": self.suite, "variant": self.variant, "seed": self.seed, "model": self.model.to_dict(),
                "corpus": dump(self.corpus), "train": dump(self.train), "eval": dump(self.eval),
                "plan": self.plan.to_dict(), "inference": dump(self.inference), "track": list(self.track),
                "size": self.size, "config_hash": self.config_hash}

    @property
    def key(self) -> str:
        """The run's variant directory name: the variant, or variant@size in a sweep."""
        return run_key(self.variant, self.size)

    @property
    def ident(self) -> tuple[str, int]:
        """(key, seed): what tells two runs of a plan apart (in a sweep the variant and seed repeat at every size)."""
        return self.key, self.seed

    @property
    def label(self) -> str:
        return f"{self.key} seed {self.seed}"

    def run_dir(self, results_root) -> Path:
        """results_root/<suite>/<variant or variant@size>/seed-<n>/: where this run's files live."""
        return run_dir(results_root, self.suite, self.variant, self.seed, self.size)

    def hashed(self) -> "RunSpec":
        return replace(self, config_hash=config_hash(self.to_dict()))


def config_hash(d: dict) -> str:
    """Content hash of everything that changes what a run computes: the resume / skip key."""
    keep = {k: d[k] for k in ("variant", "seed", "model", "corpus", "train", "eval")}
    if d.get("inference"):
        keep["inference"] = d["inference"]
    if d.get("size") is not None:  # only in a sweep, so runs of suites without one keep their hashes
        keep["size"] = d["size"]
    for section, names in NOT_HASHED.items():
        keep[section] = {k: v for k, v in keep[section].items() if k not in names}
    keep["train"] = _without_defaults(keep["train"], HASHED_IF_SET["train"])
    if (keep["model"] or {}).get("moe"):
        keep["model"] = {**keep["model"], "moe": _without_defaults(keep["model"]["moe"], HASHED_IF_SET["moe"])}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _without_defaults(d: dict, defaults: dict) -> dict:
    return {k: v for k, v in d.items() if not (k in defaults and v == defaults[k])}


def run_specs(plan: Plan, only: list[str] | None = None) -> list[RunSpec]:
    """One spec per (variant, seed), in plan order; in a sweep per (size, variant, seed), size by size."""
    s = plan.suite
    default_steps = s.train.steps or s.train.tokens // (s.train.batch_size * s.corpus.seq_len)
    ev = s.eval.model_copy(update={"batch_size": s.eval.batch_size or s.train.batch_size})
    out = []
    for row in plan.rows:
        if only and row.name not in only:
            continue
        steps = row.steps or default_steps
        for seed in s.train.seeds:
            train = s.train.model_copy(update={"seeds": [seed], "steps": steps,
                                               "tokens": steps * s.train.batch_size * s.corpus.seq_len,
                                               "warmup_steps": s.train.warmup_for(steps)})
            out.append(RunSpec(s.name, row.name, seed, plan.configs[row.key], s.corpus, train, ev, row,
                               s.inference, s.track, row.size).hashed())
    return out
