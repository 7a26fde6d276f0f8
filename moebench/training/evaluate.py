"""Validation / test loss, perplexity and bits per byte on a fixed token budget, plus expert statistics.

The evaluation windows are the first `tokens` tokens of the split cut into non-overlapping seq_len windows:
the same text for every variant and seed, so curves compare point for point.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from moebench.models.counters import accumulate, expert_stats
from moebench.models.moe import collecting_stats


def eval_windows(tokens: np.ndarray, n_tokens: int, seq_len: int) -> torch.Tensor:
    n = min(n_tokens, len(tokens) - 1) // seq_len
    if n < 1:
        from moebench.errors import UserError

        raise UserError(f"corpus split has {len(tokens)} tokens, fewer than one window of seq_len {seq_len}")
    arr = np.asarray(tokens[: n * seq_len + 1], dtype=np.int64)
    x = torch.from_numpy(arr[:-1].reshape(n, seq_len).copy())
    y = torch.from_numpy(arr[1:].reshape(n, seq_len).copy())
    return torch.stack([x, y])


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    return loss_nats / math.log(2) / bytes_per_token


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, batch_size: int, device, bytes_per_token: float, autocast=None,
             dead_threshold: float = 0.1) -> dict:
    """Loss and expert counters are summed on the device and read back once, at the end."""
    was_training = model.training
    model.eval()
    total, count, counters = torch.zeros((), dtype=torch.float64, device=device), 0, None
    try:
        with collecting_stats(model):
            for i in range(0, windows.shape[1], batch_size):
                x = windows[0, i : i + batch_size].to(device)
                y = windows[1, i : i + batch_size].to(device)
                with autocast() if autocast else contextlib.nullcontext():
                    out = model(x)
                total += F.cross_entropy(out.logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
                count += y.numel()
                if out.expert_counters:
                    counters = accumulate(counters, out.expert_counters)
    finally:
        model.train(was_training)
    loss = float(total) / count
    res = {"loss": loss, "ppl": math.exp(min(loss, 700)), "bpb": bits_per_byte(loss, bytes_per_token)}
    if counters is not None:
        res["experts"] = expert_stats(counters, dead_threshold)
    return res

