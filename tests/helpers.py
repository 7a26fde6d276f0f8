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
