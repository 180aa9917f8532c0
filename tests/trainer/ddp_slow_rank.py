"""Run by ``torchrun`` from test_training.py: a 2-process CPU training in which rank 0 preprocesses each of
its cases ``DELAY`` seconds slower, and every collective of the default process group times out after
``TIMEOUT`` seconds (NCCL's 10 minutes against a ~1,250-case cold cache, scaled down).

Usage: python -m torch.distributed.run --nproc_per_node 2 ddp_slow_rank.py DATA RUN CACHE TIMEOUT DELAY
"""

import sys
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
from torch.distributed import distributed_c10d

from bratsx.trainer import cache
from bratsx.trainer.config import TrainConfig
from bratsx.trainer.distributed import context_from_environment
from bratsx.trainer.loop import train


def main(data: str, run: str, cache_dir: str, timeout: str, delay: str) -> None:
    context = context_from_environment()
    init_process_group = dist.init_process_group

    def init_with_short_timeout(*args, **kwargs):
        init_process_group(*args, **kwargs)  # rendezvous with the default timeout, then shorten it
        distributed_c10d._set_pg_timeout(timedelta(seconds=float(timeout)))

    dist.init_process_group = init_with_short_timeout
    if context.rank == 0:
        write_entry = cache._write_entry

        def slow_write_entry(*args, **kwargs):
            time.sleep(float(delay))
            return write_entry(*args, **kwargs)

        cache._write_entry = slow_write_entry
    config = TrainConfig(data_dir=Path(data), run_dir=Path(run), cache_dir=Path(cache_dir), epochs=1, iterations=2,
                         patch=(16, 16, 16), features=(4, 8, 16), batch_size=2, val_every=1, val_fraction=0.5,
                         workers=0, seed=5)
    result = train(config, distributed=context)
    print(f"rank {context.rank}: {result.stopped} after {result.steps} steps")


if __name__ == "__main__":
    main(*sys.argv[1:])
