"""Models: a dense-or-MoE decoder-only transformer, routers, expert backends."""
from .spec import ModelConfig, MoEConfig


def __getattr__(name: str):
    # the transformer (and torch) load on first use: the planner imports models.spec and models.names alone
    if name in ("ModelOutput", "Transformer"):
        from . import transformer

        return getattr(transformer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ModelConfig", "MoEConfig", "ModelOutput", "Transformer"]
