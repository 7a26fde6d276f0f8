"""One RunSpec in, one finished run directory out: the training loop with evaluation, checkpoints and resume.

Batches are a pure function of (seed, step), so a resumed run sees exactly the data an uninterrupted one
would, and model, optimizer and RNG state come back from the checkpoint: its loss curve is the same.
"""
from __future__ import annotations

import contextlib
import io
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from moebench import io as R
from moebench.config.schema import TrainSpec
from moebench.distributed.parallel import Parallel  # [distributed]
from moebench.errors import RunFailed, UserError
from moebench.models import Transformer
from moebench.models.balancing import end_of_step, set_reduce
from moebench.models.backends import resolve_backend, resolve_device
from moebench.plan import RunSpec
from moebench.registry import Registry

from .env import environment, set_fp32_matmul
from .evaluate import eval_windows, evaluate
from .flops_measured import measured_forward_flops_per_token
from .memory import CPU_METHOD, CUDA_METHOD, SavedActivations, state_bytes
from .trackers import Trackers

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# train.optimizer's choices (the schema's Literal lists the same names; a test checks they agree)
OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.add("adamw", lambda p, t: torch.optim.AdamW(p, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay))
OPTIMIZERS.add("adam", lambda p, t: torch.optim.Adam(p, lr=t.lr, betas=tuple(t.betas)))
OPTIMIZERS.add("sgd", lambda p, t: torch.optim.SGD(p, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay))


def lr_at(step: int, t: TrainSpec) -> float:
    """Linear warm-up, then cosine / linear decay to min_lr_ratio * lr, or constant."""
    lr, warm, total = t.lr, t.warmup_steps, t.steps
    if step < warm:
        return lr * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    floor = lr * t.min_lr_ratio
    if t.schedule == "cosine":
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    if t.schedule == "linear":
        return lr - (lr - floor) * frac
    return lr


def batch_at(tokens: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch_size)
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


@dataclass
class Data:
    train: object  # moebench.data.TokenSplit
    valid: object
    test: object | None


def load_data(spec: RunSpec) -> Data:
    from moebench.data import load_tokens

    c = spec.corpus
    test = load_tokens(c.name, c.tokenizer, "test") if spec.eval.test else None
    data = Data(load_tokens(c.name, c.tokenizer, "train"), load_tokens(c.name, c.tokenizer, "valid"), test)
    for split, ts in (("train", data.train), ("valid", data.valid)):
        if len(ts.tokens) <= c.seq_len + 1:
            raise UserError(f"corpus.seq_len: {c.seq_len} is longer than the {split} split ({len(ts.tokens)} tokens)")
    return data


class StepClock:
    """A step's duration: CUDA events on the GPU (no device-wide synchronize; read after the step's one host
    sync), wall time on the CPU, where every op has finished when it returns."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            self.end.record()
        else:
            self.t1 = time.perf_counter()

    def seconds(self) -> float:
        if self.cuda:
            self.end.synchronize()  # already complete after the step's read-back: no extra wait
            return self.start.elapsed_time(self.end) / 1e3
        return self.t1 - self.t0


class Trainer:
    def __init__(self, spec: RunSpec, out: Path, data: Data, stop_requested: Callable[[], bool] = lambda: False,
                 progress=None):
        self.spec, self.out, self.data = spec, Path(out), data
        self.stop_requested, self.progress = stop_requested, progress
        t = spec.train
        self.device = resolve_device(t.device)
        if self.device.type == "cpu" and t.threads:
            # small models gain nothing from more threads, and threads that outnumber free cores spin-wait
            torch.set_num_threads(t.threads)
        set_fp32_matmul(bool(t.tf32))
        self.backend = resolve_backend(t.moe_backend, self.device) if spec.model.moe else "none"
        torch.manual_seed(self.spec.seed)
        self.model = Transformer(spec.model, self.backend if spec.model.moe else "torch").to(self.device)
        # [distributed] DDP / FSDP / expert-parallel layout; the identity in one process
        self.par = Parallel(self.model, t, spec.seed, self.device)
        local_rows = t.batch_size // self.par.world
        if local_rows % t.grad_accum_steps:
            raise UserError(f"train.grad_accum_steps: {t.grad_accum_steps} does not divide the {local_rows} rows "
                            f"each of the {self.par.world} processes gets")
        set_reduce(self.model, self.par.sum_over_ranks())  # [distributed] global-batch f_i (lb_scope: global)
        self.metrics_path = self.out / self.par.local_name(R.METRICS)
        self.ckpt_path = self.out / self.par.local_name(R.CHECKPOINT)
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        other = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.opt = OPTIMIZERS[t.optimizer]([{"params": decay}, {"params": other, "weight_decay": 0.0}], t)
        self.forward = compile_for_training(self.par.module) if t.compile else self.par.module
        dtype = DTYPES[t.dtype]
        self.autocast = None
        if dtype != torch.float32:
            self.autocast = lambda: torch.autocast(self.device.type, dtype=dtype)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        self.windows = eval_windows(data.valid.tokens, spec.eval.tokens, spec.model.seq_len)
        self.step, self.wall, self.mem_act = 0, 0.0, 0
        self.trackers = Trackers([])  # the runner opens the suite's trackers once it knows the start step
        self._next: tuple | None = None  # (step, batch) built while the previous step ran
        self.stop = False
        self.resume_problem: str | None = None  # a damaged checkpoint, said by the runner before training

    # ------------------------------------------------------------ checkpoint
    def save_checkpoint(self) -> None:
        state = {
            "step": self.step, "wall": self.wall, "mem_act": self.mem_act, "config_hash": self.spec.config_hash,
            "model": self.model.state_dict(), "opt": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(), "layout": self.par.layout(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        R.atomic_write_bytes(self.ckpt_path, buf.getvalue())

    def _load_checkpoint(self):
        """The checkpoint's state, or None; a truncated / corrupt file is named in resume_problem, set aside
        (checkpoint.pt.damaged, never read again) and training restarts from step 0."""
        path = self.ckpt_path
        if not path.exists():
            return None
        try:  # weights_only: a checkpoint holds tensors and plain data only, so opening one runs no code
            state = torch.load(path, map_location=self.device, weights_only=True)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a moebench checkpoint")
            return state
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means the same: start over
            why = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.resume_problem = (f"{path}: checkpoint is damaged ({type(e).__name__}: {why[:120]}); restarting "
                                   f"from step 0 (the file is kept as {path.name}.damaged)")
            path.replace(path.with_name(path.name + ".damaged"))
            return None

    def try_resume(self) -> bool:
        state = self._load_checkpoint()
        if state is not None and (state.get("config_hash") != self.spec.config_hash
                                  or state.get("layout") != self.par.layout()):
            state = None
        if not self.par.agreed_step(None if state is None else state["step"]):  # [distributed] all ranks or none
            return False
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.wall, self.mem_act = state["step"], state["wall"], state["mem_act"]
        # metrics written after the checkpoint belong to steps that will be redone
        rows = [r for r in R.read_metrics(self.metrics_path) if r["step"] <= self.step]
        R.atomic_write_text(self.metrics_path, "".join(_jsonl(r) for r in rows))
        return True

    # ------------------------------------------------------------ loop
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of step `step`'s batch on the device. On CUDA from pinned memory without blocking
        the host, so building the next batch overlaps the current step's kernels."""
        t, cfg = self.spec.train, self.spec.model
        x, y = batch_at(self.data.train.tokens, self.spec.seed, step, t.batch_size, cfg.seq_len)
        x, y = self.par.local_batch(x, y)  # [distributed] this rank's rows of the global batch
        if self.device.type != "cuda":
            return x.to(self.device), y.to(self.device)
        return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)

    def train_step(self) -> dict:
        """One optimizer step with one host sync: the losses are read back together after the optimizer step
        (a non-finite loss still fails the run at this step; the weights of a failed run are never saved). In
        distributed runs every per-step number goes through one collective (Parallel.step_metrics)."""
        t = self.spec.train
        nxt, self._next = self._next, None
        x, y = nxt[1] if nxt is not None and nxt[0] == self.step else self.batch(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, t)
        watch = SavedActivations() if self.step == 0 or not self.mem_act else None
        self.par.step_begin()
        clock = StepClock(self.device)
        A = t.grad_accum_steps
        lm_loss = aux_loss = 0.0
        with (watch.watch() if watch else contextlib.nullcontext()):
            # gradient accumulation: the step's rows in A micro-batches, each loss / A, one optimizer step
            for i, (xm, ym) in enumerate(zip(x.chunk(A), y.chunk(A))):
                with self.par.accumulating(last=i == A - 1):  # [distributed] sync gradients on the last only
                    with self.autocast() if self.autocast else contextlib.nullcontext():
                        out = self.forward(xm)
                        lm = F.cross_entropy(out.logits.float().flatten(0, 1), ym.flatten())
                        loss = (lm + out.aux_loss) / A
                    self.scaler.scale(loss).backward()
                lm_loss, aux_loss = lm_loss + lm.detach().float() / A, aux_loss + out.aux_loss.detach().float() / A
        self.par.after_backward()
        if t.grad_clip:
            self.scaler.unscale_(self.opt)
            self.par.clip_grad_norm_(t.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        end_of_step(self.model, self.par.sum_over_ranks())  # loss-free balancing bias; clears the step's loads
        clock.stop()
        if self.step + 1 < t.steps:
            # On CUDA the host builds the next batch while the device still runs this step (on the CPU it is
            # simply built here, outside the step clock). Batches are a pure function of (seed, step): the
            # prefetched batch is exactly the one a resumed run builds.
            self._next = (self.step + 1, self.batch(self.step + 1))
        lm, ax = torch.stack([lm_loss, aux_loss]).tolist()  # the one sync
        dt = clock.seconds()
        g = self.par.step_metrics(dt, x.numel(), lm, ax, self.stop_requested())  # [distributed] global numbers
        if not (math.isfinite(g["loss"]) and math.isfinite(g["aux_loss"])):
            raise RunFailed(self.step, f"loss is {g['loss'] + g['aux_loss']} (not finite)")
        self.stop = g.pop("stop")
        dt = g.pop("step_time")
        if watch:  # one micro-batch's activations are alive at a time: the watch saw A of them
            self.mem_act = watch.bytes // t.grad_accum_steps
        self.step += 1
        self.wall += dt
        n_tok = g.pop("tokens")
        return {"kind": "train", "step": self.step, "tokens": self.step * n_tok,
                "flops": self.step * n_tok * self.spec.plan.train_flops_per_token, "wall": round(self.wall, 6),
                "loss": g.pop("loss"), "aux_loss": g.pop("aux_loss"), "lr": self.opt.param_groups[0]["lr"],
                "step_time": dt, "tokens_per_s": g.pop("tokens_per_s"), **g}

    def eval_row(self, row: dict) -> dict:
        moe = self.spec.model.moe
        res = evaluate(self.model, self.windows, self.spec.eval.batch_size, self.device,
                       self.data.valid.bytes_per_token, self.autocast, moe.dead_threshold if moe else 0.1)
        if not math.isfinite(res["loss"]):
            raise RunFailed(self.step, f"validation loss is {res['loss']} (not finite)")
        ev = {k: row[k] for k in ("step", "tokens", "flops", "wall")}
        ev.update(kind="eval", val_loss=res["loss"], val_ppl=res["ppl"], val_bpb=res["bpb"])
        if "experts" in res:
            ev["experts"] = res["experts"]
        return ev

    def run(self) -> dict:
        """Train to the end (or until a stop is requested: then checkpoint and raise KeyboardInterrupt)."""
        t, ev = self.spec.train, self.spec.eval
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        with open(self.metrics_path, "a", encoding="utf-8") as log:
            while self.step < t.steps:
                row = self.train_step()
                lines = [row]
                last = self.step == t.steps
                if self.step % ev.interval == 0 or last:
                    lines.append(self.eval_row(row))
                log.write("".join(_jsonl(r) for r in lines))
                log.flush()
                self.trackers.log(lines)  # mirrors of the rows just written (TensorBoard, W&B)
                if self.progress:
                    self.progress(self.step, t.steps, lines)
                if self.step % t.checkpoint_every == 0 and not last:
                    self.save_checkpoint()
                if self.stop and not last:  # [distributed] any rank's request stops every rank (step_metrics)
                    self.save_checkpoint()
                    raise KeyboardInterrupt
        return self.summary()

    def summary(self) -> dict:
        from moebench.data import unigram_cross_entropy

        rows = R.read_metrics(self.metrics_path)
        train = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval"]
        skip = max(3, len(train) // 10)  # the first steps pay for allocation and warm-up
        steady = train[skip:] or train
        final = {"val_loss": evals[-1]["val_loss"], "val_ppl": evals[-1]["val_ppl"], "val_bpb": evals[-1]["val_bpb"]}
        if self.data.test is not None:
            tw = eval_windows(self.data.test.tokens, self.spec.eval.tokens, self.spec.model.seq_len)
            res = evaluate(self.model, tw, self.spec.eval.batch_size, self.device, self.data.test.bytes_per_token,
                           self.autocast)
            final.update(test_loss=res["loss"], test_ppl=res["ppl"], test_bpb=res["bpb"])
        if self.device.type == "cuda":
            peak, method = torch.cuda.max_memory_allocated(self.device), CUDA_METHOD
        else:
            # [distributed] an FSDP rank holds shards
            peak, method = state_bytes(self.model, self.opt, self.par.local_tensor) + self.mem_act, CPU_METHOD
        peak = self.par.max_over_ranks(peak)  # [distributed] memory per rank: the largest rank's
        # an independent count of what the trained model computes on one evaluation batch (real routing)
        measured = measured_forward_flops_per_token(self.par.module, self.windows[0, : self.spec.eval.batch_size]
                                                    .to(self.device))
        return {
            **run_identity(self.spec), "status": "ok", "failure": None, "backend": self.backend,
            "flops_measured": {"forward": measured, "method": "FlopCounterMode, math SDPA, one eval batch, end of "
                                                              "training"},
            "steps": self.step, "tokens": train[-1]["tokens"], "wall_time_s": self.wall, "final": final,
            # how often the run saw its corpus: claims are INCONCLUSIVE past max_epochs (data repetition)
            "unique_train_tokens": len(self.data.train.tokens),
            "epochs": train[-1]["tokens"] / len(self.data.train.tokens),
            # the initial plateau (a unigram model's loss): the scaling fit leaves sizes that never left it out
            "unigram_ce_val": unigram_cross_entropy(self.data.train, self.data.valid),
            "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in steady),
            "step_time_median_s": statistics.median(r["step_time"] for r in steady),
            "peak_memory_bytes": int(peak), "peak_memory_method": method,
            "experts": evals[-1].get("experts"), "lm_eval": {}, "env": environment(self.device, self.spec.train.dtype),
            **self.par.summary_fields(train, self.wall),  # [distributed] world_size, parallel, comm_time_s
        }


def compile_for_training(module: torch.nn.Module, backend: str = "inductor"):
    """torch.compile(module), with dynamo's one silent fallback made loud: past its recompile limit (8 versions
    of a frame) dynamo would run the rest of the run eagerly and say so only in a log line; here it raises, and
    the run fails naming the cause. The MoE layer is compile-safe for every backend (models/compiled_experts.py).
    Dynamo's caches are process-wide, so a run starts from empty ones: models of earlier runs in this process
    (another variant, another size) must not count towards this run's recompile limit."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return torch.compile(module, backend=backend)


def run_identity(spec: RunSpec) -> dict:
    """The summary fields that say which run this is and what the plan counted for it (ok or failed)."""
    p = spec.plan
    return {
        "suite": spec.suite, "variant": spec.variant, "seed": spec.seed, "config_hash": spec.config_hash,
        "kind": p.kind, "matched_to": p.matched_to, **({"size": spec.size} if spec.size is not None else {}),
        "params": {"total": p.params_total, "active": p.params_active, "embedding": p.params_embedding},
        "flops_per_token": {"train": p.train_flops_per_token, "forward": p.forward_flops_per_token},
    }


def _jsonl(row: dict) -> str:
    import json

    return json.dumps(row, sort_keys=True) + "\n"
