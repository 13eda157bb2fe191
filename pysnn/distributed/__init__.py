"""Training on several processes and devices with torch.distributed (launched
by torchrun): data parallel (`data_parallel`) and layer parallel
(`pipeline`), on one runtime (`runtime`)."""

from .runtime import DistContext, DistributedError, destroy_process_group, settle, setup

__all__ = ["DistContext", "DistributedError", "destroy_process_group", "settle", "setup"]
