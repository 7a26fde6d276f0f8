"""Models: a dense-or-MoE decoder-only transformer, routers, expert backends."""
from .spec import ModelConfig, MoEConfig
from .transformer import ModelOutput, Transformer

__all__ = ["ModelConfig", "MoEConfig", "ModelOutput", "Transformer"]
