"""Prediction latency: milliseconds per row on the CPU, for a sweep objective or constraint (`latency_ms`).

Measured once at the end of training on a fixed batch (the first LATENCY_ROWS rows of the validation split, else of
the test or training split), in eval mode under torch.inference_mode, on one thread: parallel trials share the
cores, and one thread is what makes trials measured at different times comparable. One warm-up pass, then the
median of up to REPEATS timed passes; passes stop early once BUDGET_S is spent (at least MIN_REPEATS), so the cost
is a warm-up plus the larger of three passes and about BUDGET_S: measured on a busy 2-core machine, 0.5 ms for a
small MLP, 35 ms for the MNIST-1D CNN, 65 ms for a 784-512-512-10 MLP, 170 ms for a 64-unit GRU over 40 steps (a
fraction of one epoch's training). That is why every run records it. It is the machine's own timing: trials timed
while other work loads the cores are slower, so compare trials run under similar conditions.
"""
from __future__ import annotations

import statistics
import time

LATENCY_ROWS = 256
REPEATS = 7
MIN_REPEATS = 3
BUDGET_S = 0.025


def latency_batch(dataset):
    """The rows latency is measured on, or None when the data has no rows."""
    for split in ("val", "test", "train"):
        x = getattr(dataset, f"x_{split}", None)
        if x is not None and len(x):
            x = x[:LATENCY_ROWS]
            # Rows held in another form (uint8 pixels) become the float inputs the network sees.
            return dataset.floats(x) if hasattr(dataset, "floats") else x
    return None


def latency_ms_per_row(network, x) -> float:
    """The median milliseconds per row of `network(x)` on the CPU, single-threaded."""
    import torch

    was_training, threads = network.training, torch.get_num_threads()
    network.eval()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            network(x)                          # warm-up: first-call allocations and lazy initialisation
            times, spent = [], 0.0
            while len(times) < REPEATS and (len(times) < MIN_REPEATS or spent < BUDGET_S):
                start = time.perf_counter()
                network(x)
                times.append(time.perf_counter() - start)
                spent += times[-1]
    finally:
        torch.set_num_threads(threads)
        network.train(was_training)
    return statistics.median(times) * 1000.0 / len(x)
