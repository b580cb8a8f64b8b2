"""On a CUDA GPU: does cuda_graphs=true capture, and does it train what the eager steps train?

    python benchmarks/check_cuda_graphs.py             # MNIST-1D MLP, CNN, GRU; 4 epochs each way

For each model: `netkiln train` eagerly and with cuda_graphs=true (same seed), then prints whether the log says
the steps were captured, the largest weight difference, and both runs' validation accuracy. GPU kernels are not
bit-reproducible run to run (atomics in backward), so the weights are compared with a tolerance, and the eager run
is repeated once to show how far two eager runs drift apart.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

MODELS = {
    "mlp": ["model=mlp"],
    "cnn": ["model=cnn"],
    "gru": ["model=gru"],
}


def train(run_dir: Path, overrides: list[str]) -> dict:
    import json

    from netkiln.cli import main

    rc = main(["train", "data=mnist1d", "trainer.max_epochs=4", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}", *overrides])
    if rc != 0:
        raise SystemExit(f"netkiln train {' '.join(overrides)} exited {rc}")
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    return {"weights": state, "metrics": json.loads((run_dir / "metrics.json").read_text()),
            "log": (run_dir / "train.log").read_text()}


def largest_difference(a: dict, b: dict) -> float:
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (tests/test_cuda_graphs.py covers the CPU side)")
        return 1
    failed = False
    with tempfile.TemporaryDirectory(prefix="netkiln-graphs-") as tmp:
        for name, overrides in MODELS.items():
            eager = train(Path(tmp) / f"{name}-eager", overrides)
            again = train(Path(tmp) / f"{name}-eager-again", overrides)
            graphed = train(Path(tmp) / f"{name}-graphed", overrides + ["cuda_graphs=true"])
            captured = "replayed as one CUDA graph" in graphed["log"]
            reason = [line for line in graphed["log"].splitlines() if "cuda_graphs:" in line]
            drift = largest_difference(eager["weights"], again["weights"])
            diff = largest_difference(eager["weights"], graphed["weights"])
            print(f"{name}: captured={captured} | max |w_eager - w_graphed| = {diff:.2e} "
                  f"(two eager runs: {drift:.2e}) | val acc eager {eager['metrics']['val']['acc']:.4f}, "
                  f"graphed {graphed['metrics']['val']['acc']:.4f}")
            for line in reason:
                print("   ", line.split(" - ", 1)[-1])
            failed |= not captured or diff > max(1e-3, 100 * drift)
    print("FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
