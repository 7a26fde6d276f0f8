"""Scale-out on torch.distributed: data parallel (DDP / FSDP2), expert parallel (all_to_all), torchrun launch.

Everything here is a no-op in a single process: `world_size() == 1` and `is_rank0()` is True unless torchrun
(or another launcher setting RANK / WORLD_SIZE / MASTER_ADDR) started us.
"""
from .groups import (barrier, comm_timer, init, is_distributed, is_rank0, local_rank, rank, teardown,
                  world_size)

__all__ = ["barrier", "comm_timer", "init", "is_distributed", "is_rank0", "local_rank", "rank", "teardown",
           "world_size"]
