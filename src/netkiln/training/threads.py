"""`threads`: torch's CPU threads for a training run: `auto` (the default), a number, or null (torch's own choice).

torch starts one thread per core, and its threads wait for each other at every operation. Beside one other busy
process that wait collapses: on 2 cores the default MNIST-1D run took 68 s with 2 threads and 13 s with 1, because
one of the two threads shares its core. A second thread pays only when each operation holds enough work, so `auto`
gives every thread at least FLOPS_PER_THREAD of a batch's forward pass: one thread for small models (every model
netkiln ships, on its datasets at batch 100), more for large ones, never more than the cores this run may use (its
share when joblib runs trials side by side). benchmarks/bench_threads.py measures the choice.
"""
from __future__ import annotations

import logging
import os

from netkiln.config_values import is_positive_int
from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

# A batch's forward pass per thread. On the shared 2-core machine (benchmarks/bench_threads.py, README), a second
# thread gained at most 21% at quiet moments (models of 6 MFLOP to 1.2 GFLOP a batch) and lost 1.5-4.7x beside a
# busy process.
FLOPS_PER_THREAD = 1e9


def check_threads(value):
    """`auto`, a positive integer, or None; anything else is a config error."""
    if value is None or value == "auto":
        return value
    if not is_positive_int(value):
        raise NetkilnError(f"must be auto, a positive integer or null, not {value!r}.", key="threads")
    return value


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_trials() -> int:
    """How many trials a joblib launcher runs side by side (1 otherwise)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return available_cores() if n_jobs == -1 else max(n_jobs, 1)


def forward_flops(network, example) -> int:
    """Floating-point operations of the network's forward pass on `example` (torch's FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = network.training
    network.eval()                  # BatchNorm on one row, no dropout: nothing learned, no random numbers drawn
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(example)
    finally:
        network.train(was_training)
    return int(counter.get_total_flops())


def auto_threads(flops_per_batch: float, cores: int) -> int:
    return max(1, min(cores, int(flops_per_batch // FLOPS_PER_THREAD)))


def set_threads(setting, network, example, batch_size: int) -> int:
    """Apply `threads` for this run (`example`: training rows, batch first); returns torch's thread count."""
    import torch

    setting = check_threads(setting)
    parallel = parallel_trials()
    share = max(1, available_cores() // parallel)        # parallel joblib trials share the cores
    if setting == "auto":
        flops = forward_flops(network, example[:1]) * batch_size
        threads = auto_threads(flops, share)
        log.info("threads: %d (auto: a batch's forward pass is %.1f MFLOP; %d core%s for this run)", threads,
                 flops / 1e6, share, "" if share == 1 else "s")
    elif setting is None:
        if parallel == 1:
            return torch.get_num_threads()               # torch's own choice
        threads = share
    else:
        threads = setting
    torch.set_num_threads(threads)
    return threads
