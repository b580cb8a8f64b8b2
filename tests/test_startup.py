"""Start-up stays light: what `netkiln summary` and `netkiln --help` must not import (no timing asserted)."""
import subprocess
import sys


def imported_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_imports_no_torch_or_hydra():
    mods = imported_modules("from netkiln.cli import main; main(['--help'])")
    assert not {"torch", "hydra", "omegaconf"} & mods


def test_summary_on_cached_mnist1d_skips_heavy_imports(tmp_path):
    from netkiln.cli import main
    assert main(["summary", "model=cnn", "data=mnist1d"]) == 0      # makes sure the MNIST-1D cache exists
    mods = imported_modules(f"import os; os.chdir({str(tmp_path)!r})\n"
                            "from netkiln.cli import main; assert main(['summary']) == 0")
    heavy = {"pytorch_lightning", "lightning", "torchmetrics", "mnist1d", "matplotlib", "scipy"}
    assert not heavy & mods, heavy & mods


def test_mnist1d_defaults_match_the_package():
    from mnist1d.data import get_dataset_args

    from netkiln.data.sources import MNIST1D_ARGS, MNIST1D_DEFAULTS
    reference = {k: v for k, v in get_dataset_args(as_dict=True).items() if k in MNIST1D_ARGS}
    assert MNIST1D_DEFAULTS == reference
