"""Training on several processes and devices with torch.distributed (launched
by torchrun): data parallel (`data_parallel`) and layer parallel
(`pipeline`), on one runtime (`runtime`)."""
from .runtime import DistContext, DistributedError, setup

__all__ = ["DistContext", "DistributedError", "setup"]
