"""Final weights on disk as safetensors: a results directory from someone else can be opened without running
any of its code (a pickled model.pt can execute arbitrary code when unpickled with weights_only=False).

safetensors refuses two names for one storage, which is what tied embeddings are (head.weight is
embed.weight): each such alias is saved once and recorded in the file's metadata, and comes back on load.
Run directories written before the switch hold model.pt; it is still read, with torch.load(weights_only=True),
which refuses anything but tensors and plain containers.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

ALIASES_KEY = "moebench.aliases"  # metadata: {"alias name": "saved name"} for tensors that share storage


def _storage_key(t: torch.Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def split_aliases(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to save, alias -> saved name): the first name of every shared storage is the one saved."""
    first: dict[tuple, str] = {}
    tensors, aliases = {}, {}
    for name, t in state.items():
        key = _storage_key(t)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            tensors[name] = t.detach().contiguous()
    return tensors, aliases


def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """The safetensors file of a state dict (tied tensors saved once), as bytes for an atomic write."""
    from safetensors.torch import save

    tensors, aliases = split_aliases({k: v.cpu() for k, v in state.items()})
    return save(tensors, metadata={"format": "pt", ALIASES_KEY: json.dumps(aliases, sort_keys=True)})


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict from model.safetensors (aliases restored) or, for old run directories, model.pt."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return torch.load(path, map_location=device, weights_only=True)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        aliases = json.loads((f.metadata() or {}).get(ALIASES_KEY, "{}"))
    for alias, name in aliases.items():
        state[alias] = state[name]
    return state
