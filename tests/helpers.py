"""Small suites for tests: seconds to train on PTB bytes."""
from __future__ import annotations

import copy

TINY = {
    "name": "tiny",
    "corpus": {"name": "ptb", "tokenizer": "byte", "seq_len": 32},
    "base": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64},
    "variants": {
        "dense": {},
        "moe": {"num_experts": 4, "top_k": 2, "expert_d_ff": "auto", "router": "topk"},
    },
    "train": {"steps": 12, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "seeds": [0], "device": "cpu",
              "checkpoint_every": 4, "threads": 1},
    "eval": {"interval": 4, "tokens": 1024, "test": True},
    "match": {"by": "train_flops", "tolerance": 0.1},
}


def tiny(**changes) -> dict:
    """A copy of TINY with dotted-path changes applied: tiny(**{"train.lr": -1})."""
    d = copy.deepcopy(TINY)
    for path, value in changes.items():
        node = d
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return d


DELETE = object()


SWEEP_SIZES = {"s": {"base": {"d_model": 16, "d_ff": 32}},
               "m": {"base": {"d_model": 32, "d_ff": 64}, "tokens_per_param": 0.2},
               "l": {"base": {"d_model": 48, "d_ff": 96}, "steps": 20}}


def tiny_sweep(**changes) -> dict:
    """TINY with a three-size sweep (s, m, l), 2 seeds; dotted-path changes as in tiny()."""
    return tiny(**{"sweep": {"tokens_per_param": 0.1, "sizes": copy.deepcopy(SWEEP_SIZES)}, "train.seeds": [0, 1],
                   **changes})
