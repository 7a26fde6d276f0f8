"""Models: a dense-or-MoE decoder-only transformer, routers, expert backends."""
from .config import ModelConfig, MoEConfig
from .transformer import ModelOutput, Transformer

__all__ = ["ModelConfig", "MoEConfig", "ModelOutput", "Transformer"]
