import os

# As the CLI does before torch loads (netkiln.cli._calm_openmp): OpenMP threads spin only briefly.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tiny_run(n_samples: int = 120, epochs: int | None = 1, model: str | None = "mlp", n_features: int = 8) -> list[str]:
    """`netkiln train` overrides for a run of a few seconds: synthetic rows, a small model, the debug trainer, no
    progress bar, batches of 32. epochs=None (or model=None) leaves trainer.max_epochs (or model) to the test."""
    args = ["data=synthetic", f"data.n_samples={n_samples}", f"data.n_features={n_features}", "trainer=debug",
            "trainer.enable_progress_bar=false", "batch_size=32"]
    if model is not None:
        args.append(f"model={model}")
    if epochs is not None:
        args.append(f"trainer.max_epochs={epochs}")
    return args


TINY = tiny_run()           # one epoch of an MLP on 120 rows (import it: `from conftest import TINY`)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    # Generated datasets (MNIST-1D) are cached once per test session, never in the working folder.
    cache = os.environ.get("NETKILN_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "netkiln-cache")
    monkeypatch.setenv("NETKILN_CACHE_DIR", cache)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run `netkiln ARGS` in a subprocess; returns CompletedProcess with text output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "netkiln.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
