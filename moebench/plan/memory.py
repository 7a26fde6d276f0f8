"""Will the runs fit? An estimate of each run's memory from its model config alone, in closed form (no tensor is
allocated, no loop over layers or experts), against the memory this machine has, before anything is written.

Per run, in bytes (docs/validation.md explains each term):
- weights and gradients: 4 bytes per parameter each (fp32 master weights, also under autocast);
- optimizer state: AdamW / Adam keep two fp32 moments (8 bytes per parameter), SGD one momentum buffer (4);
- activations saved for the backward pass, per token of a training batch (batch_size x seq_len), summed over
  the blocks: attention ~8 d_model (norm, q/k/v, RoPE copies, output), a dense FFN 3 d_model + 2 (m - 1) d_ff
  (m = the activation's matrices: the pre- and post-activation hidden), an MoE FFN the router's fp32 logits and
  probabilities (2 E), each slot's gathered input and output (2 k d_model) and hidden (2 (m - 1) expert_d_ff
  per slot and per shared expert), plus k E for a capacity limit's dispatch mask; and the head's norm, logits,
  log-softmax and their gradient (2 d_model + 3 vocab). Attention scores are not counted: PyTorch's SDPA
  (flash / memory-efficient) does not store seq_len^2 of them. Activations are 4 bytes (2 under bf16/fp16),
  times BACKWARD_SLACK for the activation gradients in flight during the backward pass and the allocator's slack;
- a forward-only pass (evaluation, the inference benchmark) at its own batch size, when that is larger;
- RUNTIME_BYTES for the framework's own buffers.
Measured on CPU (one AdamW step, peak RSS at two batch sizes): the saved-activation count above is 1.2x (MoE with
a capacity limit) to 1.4x (dense) short of the growth per token, and ~200 MB is fixed (docs/validation.md).
It is an approximation meant to catch a model that cannot fit (a typo, a wrong exponent), not to pack memory
tightly: `--skip-memory-check` skips it.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from moebench.config.suite import Suite
from moebench.errors import UserError
from moebench.io import run_key, split_key
from moebench.models.names import ACTIVATION_SHAPES as ACTIVATIONS
from moebench.models.spec import ModelConfig

from .flops import attn_params, norm_params, slots_per_token
from .plan import model_config

OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 1}  # fp32 tensors per parameter
BACKWARD_SLACK = (7, 5)  # x 1.4, as a fraction: the sizes are exact integers however large
RUNTIME_BYTES = 256 * 2**20
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Estimate:
    params: int  # bytes, each term
    grads: int
    optimizer: int
    activations: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.runtime

    def describe(self, optimizer: str) -> str:
        return (f"weights {fmt_bytes(self.params)} + gradients {fmt_bytes(self.grads)} + {optimizer} state "
                f"{fmt_bytes(self.optimizer)} + activations {fmt_bytes(self.activations)} + runtime "
                f"{fmt_bytes(self.runtime)}")


def fmt_bytes(n: float) -> str:
    for unit, div in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{int(n)} B"


def moe_layers(cfg: ModelConfig) -> int:
    """How many blocks hold an MoE FFN (ModelConfig.is_moe_layer, counted without a loop)."""
    m = cfg.moe
    return 0 if m is None else max(0, cfg.n_layers - m.n_dense_layers) // m.moe_every


def param_count(cfg: ModelConfig) -> int:
    """plan/flops.count's params_total, in closed form: count() walks every layer."""
    d, nm, n_moe = cfg.d_model, ACTIVATIONS[cfg.activation].n_matrices, moe_layers(cfg)
    total = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2) + (cfg.seq_len * d if cfg.pos == "learned" else 0)
    total += norm_params(cfg) + cfg.n_layers * (attn_params(cfg) + 2 * norm_params(cfg))
    total += (cfg.n_layers - n_moe) * nm * d * cfg.d_ff
    if cfg.moe is not None:
        m = cfg.moe
        total += n_moe * (d * m.num_experts + (m.num_experts + m.shared_experts) * nm * d * m.expert_d_ff)
    return total


def _per_token(cfg: ModelConfig, train: bool) -> int:
    """Activation elements per token (module docstring): saved for backward when `train`, else a forward's peak."""
    d, nm, n_moe = cfg.d_model, ACTIVATIONS[cfg.activation].n_matrices, moe_layers(cfg)
    hidden = 2 * (nm - 1)
    dense = 3 * d + hidden * cfg.d_ff
    moe = 0
    if cfg.moe is not None:
        m, slots = cfg.moe, math.ceil(slots_per_token(cfg))
        moe = 3 * d + 2 * m.num_experts + 2 * slots * d + (slots + m.shared_experts) * hidden * m.expert_d_ff
        moe += m.top_k * m.num_experts if m.capacity_factor else 0
    head = 2 * d + 3 * cfg.vocab_size
    if not train:  # nothing is kept from block to block: the widest block and the head
        return 8 * d + max(dense, moe) + head
    return cfg.n_layers * 8 * d + (cfg.n_layers - n_moe) * dense + n_moe * moe + head


def estimate(cfg: ModelConfig, suite: Suite) -> Estimate:
    """One run of `cfg` under the suite's train / eval / inference settings."""
    t = suite.train
    p = param_count(cfg)
    act_bytes = 4 if t.dtype == "float32" else 2
    forward_batch = max([suite.eval.batch_size or t.batch_size]
                        + (list(suite.inference.batch_sizes) if suite.inference is not None else []))
    tokens = cfg.seq_len
    num, den = BACKWARD_SLACK
    train_act = t.batch_size * _per_token(cfg, True) * num // den
    act = act_bytes * tokens * max(train_act, forward_batch * _per_token(cfg, False))
    return Estimate(4 * p, 4 * p, 4 * p * OPTIMIZER_STATES.get(t.optimizer, 2), act)


def available(device: str) -> tuple[int, str] | None:
    """(bytes, where it was read) of memory free for runs on `device` (train.device: auto, cpu or cuda): a CUDA
    device's free memory when torch is already imported and sees one, else MemAvailable from /proc/meminfo
    (so `plan` needs no torch for it). None where neither can be read (then nothing is checked)."""
    torch = sys.modules.get("torch")
    if device != "cpu" and torch is not None and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return int(free), f"free on {torch.cuda.get_device_name()}"
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, f"MemAvailable in {MEMINFO}"
    except (OSError, ValueError, IndexError):
        return None
    return None


def lower_bound_configs(suite: Suite, vocab_size: int) -> dict[str, ModelConfig]:
    """Every variant (of every sweep size) with an `auto` width at its smallest (match.multiple_of): what the
    check can see before the plan solves widths, which for an absurd model would already allocate nothing but
    take forever (flops.count walks every layer)."""
    out = {}
    for size, sub in (suite.sizes or {None: suite}).items():
        mult = sub.match.multiple_of
        for name, v in sub.variants.items():
            d_ff = v.d_ff if isinstance(v.d_ff, int) else (mult if v.d_ff == "auto" else 4 * v.d_model)
            e_ff = v.expert_d_ff if isinstance(v.expert_d_ff, int) else mult
            out[run_key(name, size)] = model_config(v, vocab_size, sub.corpus.seq_len, d_ff, e_ff)
    return out


@dataclass(frozen=True)
class MemoryCheck:
    """Refuse a plan whose `runs_at_once` largest runs need more memory than the machine has."""

    suite: Suite
    runs_at_once: int = 1
    why_at_once: str = ""  # e.g. "--jobs 4": said in the message when more than one run counts
    only: tuple[str, ...] | None = None  # `run --only`: the variants trained (default: all)

    def __call__(self, configs: dict[str, ModelConfig]) -> None:
        if self.only is not None:
            configs = {k: c for k, c in configs.items() if split_key(k)[0] in self.only}
        have = available(self.suite.train.device)
        if have is None or not configs:
            return
        free, where = have
        runs = sorted(((estimate(cfg, self.suite), key) for key, cfg in configs.items()),
                      key=lambda r: r[0].total, reverse=True)
        every = [r for r in runs for _ in self.suite.train.seeds]  # each config trains once per seed
        n = min(self.runs_at_once, len(every))
        biggest, key = runs[0]
        need = sum(e.total for e, _ in every[:n])
        if need <= free:
            return
        at_once = f"{n} runs at once ({self.why_at_once}) need about {fmt_bytes(need)}; " if n > 1 else ""
        raise UserError(
            f"memory: {at_once}the largest run, variants.{key}, needs about {fmt_bytes(biggest.total)} "
            f"({biggest.describe(self.suite.train.optimizer)}), more than the {fmt_bytes(free)} {where}; shrink "
            f"d_model, n_layers, num_experts, train.batch_size or corpus.seq_len{', or lower --jobs' if n > 1 else ''}"
            f" (or pass --skip-memory-check to train anyway)")
