"""Inference measurements of a trained model: forward tokens/s and latency across batch sizes, weight memory,
how uneven the per-expert batches are, and expert pruning (drop the least-used experts, re-measure loss,
speed and memory). The Mixtral-style claim under test: an MoE is faster at inference than a dense model with
its total parameters, and close to one with its active parameters."""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import replace

import torch
import torch.nn as nn

from moebench.training.evaluate import evaluate
from moebench.models.moe import MoELayer, collecting_stats
from moebench.models.routers import ROUTERS


def weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@torch.no_grad()
def forward_speed(model, vocab: int, seq_len: int, batch_sizes: list[int], device, repeats: int = 3) -> list[dict]:
    """Median latency of one forward of [B, seq_len] random tokens, per batch size; plus, for MoE models,
    the per-expert batch imbalance (max over experts of tokens / mean), averaged over MoE layers. The timed
    forwards compute no expert statistics (MoE is not charged for instrumentation the dense model lacks);
    the imbalance comes from one extra, untimed forward that collects them."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    rows = []
    for B in batch_sizes:
        idx = torch.randint(0, vocab, (B, seq_len), generator=g).to(device)
        model(idx)  # warm-up: allocation, kernel selection
        times, imbalance = [], None
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(idx)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        with collecting_stats(model):
            counters = model(idx).expert_counters
        if counters:
            per_layer = [float(c["counts"].max() / c["counts"].float().mean()) for c in counters]
            imbalance = sum(per_layer) / len(per_layer)
        lat = statistics.median(times)
        rows.append({"batch_size": B, "latency_ms": lat * 1e3, "tokens_per_s": B * seq_len / lat,
                     "expert_batch_max_over_mean": imbalance})
    return rows


def prune_experts(model, loads: dict[int, list[float]], min_load: float | None = None,
                  drop_least: int | None = None):
    """A copy of the model without the experts whose load share < min_load / E, or without the drop_least
    least-used experts of every MoE layer. Routers lose the matching rows, so tokens re-route among the rest."""
    pruned = copy.deepcopy(model)
    dropped = {}
    for i, load in loads.items():
        layer = pruned.blocks[i].ffn
        E = len(load)
        order = sorted(range(E), key=lambda e: load[e])
        drop = set(order[:drop_least]) if drop_least else {e for e in range(E) if load[e] < (min_load or 0) / E}
        keep = [e for e in range(E) if e not in drop]
        if len(keep) < layer.cfg.top_k:
            keep = sorted(order[-layer.cfg.top_k:])
        dropped[i] = sorted(set(range(E)) - set(keep))
        _keep_experts(layer, keep)
    return pruned, dropped


def _keep_experts(layer: MoELayer, keep: list[int]) -> None:
    idx = torch.tensor(keep, device=layer.w_up.device)
    for name in ("w_up", "w_gate", "w_down"):
        p = getattr(layer, name)
        if p is not None:
            setattr(layer, name, nn.Parameter(p.detach()[idx].clone()))
    for lin_name in ("gate", "noise"):
        lin = getattr(layer.router, lin_name, None)
        if lin is not None:
            new = nn.Linear(lin.in_features, len(keep), bias=False).to(lin.weight.device)
            new.weight.data.copy_(lin.weight.data[idx])
            setattr(layer.router, lin_name, new)
    layer.cfg = replace(layer.cfg, num_experts=len(keep))
    layer.router.cfg = layer.cfg


def measure(model, spec_model, windows, eval_batch: int, device, bytes_per_token: float, batch_sizes: list[int],
            repeats: int, prune=None) -> dict:
    """Everything the inference report needs, for one trained model."""
    base_eval = evaluate(model, windows, eval_batch, device, bytes_per_token)
    out = {"weights_bytes": weight_bytes(model), "val_loss": base_eval["loss"],
           "speed": forward_speed(model, spec_model.vocab_size, spec_model.seq_len, batch_sizes, device, repeats)}
    experts = base_eval.get("experts")
    if not (prune and experts and spec_model.moe and ROUTERS[spec_model.moe.router].learned):
        return out
    loads = {i: layer["load"] for i, layer in zip(_moe_blocks(model), experts["layers"])}
    out["pruning"] = []
    for setting in _prune_settings(prune):
        pruned, dropped = prune_experts(model, loads, **setting)
        ev = evaluate(pruned, windows, eval_batch, device, bytes_per_token)
        out["pruning"].append({
            **setting, "dropped": {str(k): v for k, v in dropped.items()}, "val_loss": ev["loss"],
            "loss_cost": ev["loss"] - base_eval["loss"], "weights_bytes": weight_bytes(pruned),
            "speed": forward_speed(pruned, spec_model.vocab_size, spec_model.seq_len, batch_sizes, device, repeats),
        })
    return out


def _moe_blocks(model) -> list[int]:
    return [i for i, b in enumerate(model.blocks) if isinstance(b.ffn, MoELayer)]


def _prune_settings(prune) -> list[dict]:
    """One setting per threshold of a PruneSpec."""
    return [{"min_load": t} for t in prune.min_load] + [{"drop_least": k} for k in prune.drop_least]
