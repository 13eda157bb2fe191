"""Where a training step's time goes: torch.profiler over a few steps of one
rule, the top operators by self CPU time.

    python scripts/profile_step.py --rule hbh [--model mlp --hidden 1024 1024 1024] [--backend fused]
                                   [--update realtime]
                                   [--cpu-memory keep]
"""

import argparse

from torch.profiler import ProfilerActivity, profile

from pysnn import cpu_memory
from pysnn.bench.train import step_case
from pysnn.config import CPU_MEMORY_MODES

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--rule", default="hll")
parser.add_argument("--model", default="mlp")
parser.add_argument("--hidden", type=int, nargs="+", default=[1024])
parser.add_argument("--backend", default="fused")
parser.add_argument("--update", default="final", choices=["final", "per-step-pred", "realtime"])
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--rows", type=int, default=15)
parser.add_argument("--cpu-memory", default="keep", choices=CPU_MEMORY_MODES, help="as pysnn train (default keep)")
args = parser.parse_args()
cpu_memory.apply(args.cpu_memory)

step = step_case(args.rule, args.model, args.backend, args.batch, hidden=args.hidden, update=args.update)
step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(args.steps):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
