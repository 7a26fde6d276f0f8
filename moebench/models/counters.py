"""Expert statistics: raw per-layer counters from each forward, summed over batches, then summarised.

Keys of the summary (what metrics.jsonl eval rows and summary.json carry under "experts"):
  load           per layer, fraction of routed (token, slot) pairs sent to each expert (before capacity drops)
  entropy        normalised entropy of the load, H(load) / log E, mean over layers (1 = perfectly balanced)
  router_entropy mean per-token entropy of the router's softmax, / log E, mean over layers
  cv             coefficient of variation of the load (std / mean), mean over layers
  max_load_x_E   max over experts of load * E, max over layers (1 = balanced; Shazeer et al. saw 17.8)
  dead_experts   experts whose load share < dead_threshold / E, summed over layers
  drop_fraction  fraction of routed pairs dropped by the capacity limit, over all layers
  z_loss         mean (logsumexp of router logits)^2, mean over layers (unscaled)
  lb_loss        Switch load-balancing term E * sum_i f_i P_i, mean over layers (unscaled; 1 when balanced)
  max_vio, max_vio_batch, cv_layers, dead_layers
                 the load metrics of Wang et al. 2024 and Megatron-Core / torchtitan, as {p50, p90, max} over
                 layers (each layer's own value is in layers[i]): MaxVio = max load / mean load - 1, globally
                 over the whole evaluation (max_vio) and per evaluation batch, averaged over batches
                 (max_vio_batch); the coefficient of variation and the dead experts of each layer
Each layers[i] holds: load, max_vio, max_vio_batch, cv, dead.
"""
from __future__ import annotations

import math

import torch

from .experts import expert_counts


def layer_counters(E: int, routed_expert_idx: torch.Tensor, n_dropped: int | torch.Tensor, probs, logits) -> dict:
    """One layer's raw counters as tensors on the layer's device (no host read, no float64: the caller sums
    them over batches on the device and `expert_stats` reads them back once)."""
    dev = routed_expert_idx.device
    with torch.no_grad():
        counts = expert_counts(routed_expert_idx, E)
        f = counts.float()
        c = {"counts": counts, "dropped": torch.as_tensor(n_dropped, dtype=torch.int64, device=dev),
             # this batch's MaxVio, summed over batches (a device scalar: read back with the rest, once)
             "vio_batch_sum": f.max() / f.mean().clamp_min(1e-12) - 1, "n_batches": torch.ones((), device=dev)}
        if probs is not None:
            p = probs.float()
            c["prob_sum"] = p.sum(0)
            c["tok_entropy_sum"] = -(p * p.clamp_min(1e-12).log()).sum()
            c["n_tokens"] = torch.tensor(p.shape[0], dtype=torch.int64, device=dev)
            c["z_sum"] = (torch.logsumexp(logits.float(), -1) ** 2).sum()
        return c


def accumulate(total: list[dict] | None, new: list[dict]) -> list[dict]:
    """Sum counters over batches, on their device."""
    if total is None:
        return [{k: v.clone() for k, v in layer.items()} for layer in new]
    for t, n in zip(total, new):
        for k, v in n.items():
            t[k] = t[k] + v
    return total


def to_host(counters: list[dict]) -> list[dict]:
    """Every counter as a CPU float64 tensor, through one device-to-host copy."""
    flat = [(i, k, v) for i, layer in enumerate(counters) for k, v in layer.items()]
    if not flat:
        return [{} for _ in counters]
    host = torch.cat([v.reshape(-1).to(torch.float64) for _, _, v in flat]).cpu()
    out: list[dict] = [{} for _ in counters]
    pos = 0
    for i, k, v in flat:
        out[i][k] = host[pos:pos + v.numel()].reshape(v.shape)
        pos += v.numel()
    return out


def expert_stats(counters: list[dict], dead_threshold: float) -> dict:
    counters = to_host(counters)
    layers, ent, rent, cvs, maxl, dead, z, lb = [], [], [], [], [], 0, [], []
    routed = dropped = 0.0
    for c in counters:
        counts = c["counts"]
        E = counts.numel()
        n = float(counts.sum())
        load = counts / max(n, 1.0)
        routed += n
        dropped += float(c["dropped"])
        nz = load[load > 0]
        ent.append(float(-(nz * nz.log()).sum() / math.log(E)) if E > 1 else 1.0)
        cvs.append(float(load.std(unbiased=False) / load.mean()) if n else 0.0)
        maxl.append(float(load.max() * E))
        dead += int((load < dead_threshold / E).sum())
        layer = {"load": [round(float(x), 6) for x in load], "max_vio": float(load.max() * E - 1) if n else 0.0,
                 "cv": cvs[-1], "dead": int((load < dead_threshold / E).sum())}
        if "vio_batch_sum" in c:
            layer["max_vio_batch"] = float(c["vio_batch_sum"]) / max(float(c["n_batches"]), 1.0)
        if "prob_sum" in c:
            nt = float(c["n_tokens"])
            rent.append(float(c["tok_entropy_sum"]) / nt / math.log(E) if E > 1 else 0.0)
            z.append(float(c["z_sum"]) / nt)
            lb.append(float(E * (load * (c["prob_sum"] / nt)).sum()))
        layers.append(layer)
    mean = lambda xs: (sum(xs) / len(xs)) if xs else None  # noqa: E731
    return {
        "layers": layers,
        "entropy": mean(ent),
        "router_entropy": mean(rent),
        "cv": mean(cvs),
        "max_load_x_E": max(maxl) if maxl else None,
        "dead_experts": dead,
        "drop_fraction": dropped / routed if routed else 0.0,
        "z_loss": mean(z),
        "lb_loss": mean(lb),
        **{name: spread([layer.get(key) for layer in layers])
           for name, key in (("max_vio", "max_vio"), ("max_vio_batch", "max_vio_batch"), ("cv_layers", "cv"),
                             ("dead_layers", "dead"))},
    }


def spread(values: list) -> dict | None:
    """{p50, p90, max} of one metric over the MoE layers (nearest-rank percentiles: values that occur)."""
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return None
    at = lambda q: xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]  # noqa: E731
    return {"p50": at(0.5), "p90": at(0.9), "max": xs[-1]}
