"""Step-time calibration for `match: {by: step_time}` (Du et al. 2024, "Revisiting MoE and Dense
Speed-Accuracy Comparisons": FLOP matching ignores routing and communication cost, so match on measured time).

A short, synthetic training step (random tokens, AdamW) is timed on the run's device; the median of a few
repetitions after warm-up is the step time. Results are cached per model config within one plan.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from moebench.models import ModelConfig, Transformer


@dataclass
class StepTimer:
    batch_size: int
    device: torch.device
    backend: str = "torch"
    warmup: int = 3
    repeats: int = 7
    seed: int = 0
    measured: dict = field(default_factory=dict)  # ModelConfig -> median seconds

    def __call__(self, cfg: ModelConfig) -> float:
        if cfg not in self.measured:
            self.measured[cfg] = self._measure(cfg)
        return self.measured[cfg]

    def _measure(self, cfg: ModelConfig) -> float:
        torch.manual_seed(self.seed)
        model = Transformer(cfg, self.backend if cfg.moe else "torch").to(self.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randint(0, cfg.vocab_size, (self.batch_size, cfg.seq_len + 1), generator=g).to(self.device)
        times = []
        for i in range(self.warmup + self.repeats):
            t0 = time.perf_counter()
            out = model(idx[:, :-1])
            loss = F.cross_entropy(out.logits.flatten(0, 1), idx[:, 1:].flatten()) + out.aux_loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= self.warmup:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def record(self) -> list[dict]:
        """What was measured, for plan.json (the calibration is part of the run's record)."""
        return [{"d_ff": c.d_ff, "expert_d_ff": c.moe.expert_d_ff if c.moe else None, "kind": "moe" if c.moe else "dense",
                 "step_time_s": t} for c, t in self.measured.items()]
