"""Every `netkiln ...` command in the README's fenced code blocks works as written (issue #13).

Each command is run in-process (`netkiln.cli.main` on the words a shell would pass; a SystemExit, as from `--help`,
counts as its exit code) in a temporary working folder standing in for the repository root (a copy of its conf/
recipes and examples/) that also holds the files the README names (houses.csv, people.csv, signals.npz, photos/,
new.csv, ...), beside three things made once: `outputs/2026-11-26/13-05-12`, a houses.csv price model that evaluate/predict/export take as RUN;
`runs/default`, a run of the default config that `netkiln train ... RUN` takes (resume and init_from repeat no data
settings); and the sweep `outputs/multirun/2026-11-26/13-10-00`. Training commands get CAPS appended (1 epoch, 2
Optuna trials) and, unless they name one, a run or sweep folder of their own (two runs started within one second
would share Hydra's timestamped folder). A command is run, or listed in EXCLUDED with the reason; a command the
README gains is run as soon as it is there, and fails here until it works (or is excluded).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from netkiln.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

HOUSES_RUN = "outputs/2026-11-26/13-05-12"
DEFAULT_RUN = "runs/default"
SWEEP = "outputs/multirun/2026-11-26/13-10-00"
CAPS = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
OPTUNA_CAPS = ["hydra.sweeper.n_trials=2"]

EXCLUDED = {
    "netkiln train -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 "
    "hydra.launcher.timeout_min=120 trainer=gpu model=mlp,cnn,gru":
        "SLURM needs a cluster (sbatch), and trainer=gpu a GPU",
    "netkiln train -m hydra/sweeper=optuna hydra.sweeper.n_trials=100 hparams=cnn_search trainer=gpu "
    "hydra.sweeper.storage=journal:///shared/me/cnn/study.log hydra.sweeper.study_name=cnn hydra.sweep.dir=/shared/me/cnn":
        "a SLURM job script (a cluster file system, a GPU); tests/test_optuna_workers.py runs workers on one journal",
}
# Run with `pytest -m slow` only: the commands that contain one of these.
SLOW = {
    "hydra/launcher=joblib": "starts worker processes that import torch",
    "hydra/launcher=submitit_local": "starts a process per trial",
    "netkiln train -m hparams=cnn_search": "two Optuna trials of the CNN on the whole of MNIST-1D",
    "netkiln train -m experiment=mnist1d_paper_mlp,mnist1d_paper_cnn,mnist1d_paper_gru":
        "three trials, the GRU's epochs are slow",
    "mlflow": "imports MLflow and sets up its SQLite store: several seconds each",
}

_OPERATORS = {"&&", "||", ";", "|", "&"}
_OUTPUT_LINE = re.compile(r"^netkiln \S+: ")          # an example of netkiln's output, e.g. `netkiln train: error: ...`


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    line: int

    @property
    def text(self) -> str:
        return " ".join(self.words)


def readme_commands(text: str) -> list[Command]:
    """The `netkiln` commands of every fenced code block, once each, in order: `\\` continuations joined, comments
    dropped, quotes removed as a shell would, and each segment of a `a && b | c` chain considered on its own."""
    found: dict[str, Command] = {}
    in_block, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if "netkiln" not in line or _OUTPUT_LINE.match(line.strip()):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token not in _OPERATORS:
                segment.append(token)
                continue
            while segment and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", segment[0]):      # VAR=value netkiln ...
                segment.pop(0)
            if segment and segment[0] == "netkiln":
                command = Command(tuple(segment), start)
                found.setdefault(command.text, command)
            segment = []
    return list(found.values())


COMMANDS = readme_commands(README.read_text())


def _slow(text: str) -> bool:
    return any(key in text for key in SLOW)


def _param(command: Command):
    marks = [pytest.mark.slow] if _slow(command.text) else []
    if command.text in EXCLUDED:
        marks.append(pytest.mark.skip(reason=EXCLUDED[command.text]))
    return pytest.param(command, marks=marks, id=f"line{command.line}-{' '.join(command.words[1:3])}")


def test_the_readme_commands_are_found():
    texts = [c.text for c in COMMANDS]
    assert len(texts) >= 25
    assert "netkiln train" in texts                                        # from the quick start's `... && netkiln train`
    assert not [t for t in texts if "\\" in t or "#" in t]                 # continuations joined, comments dropped
    # Every exclusion and slow mark names a command the README still has.
    assert not set(EXCLUDED) - set(texts), set(EXCLUDED) - set(texts)
    assert not [key for key in SLOW if not any(key in t for t in texts)]


def test_the_parser_joins_continuations_and_splits_chains():
    text = ("intro `netkiln train` in prose is not a command\n```bash\n"
            "pip install -e . && netkiln train   # comment\n"
            "netkiln train data=csv \\\n    'data.filter=\"a >= 1\"' x=[1,2] | tee log\n"
            "OMP_NUM_THREADS=1 netkiln summary\n```\n"
            "```\nnetkiln train: error: model.layers[0] (conv1d): unknown 'x'\n```\n")
    assert [c.words for c in readme_commands(text)] == [
        ("netkiln", "train"), ("netkiln", "train", "data=csv", 'data.filter="a >= 1"', "x=[1,2]"),
        ("netkiln", "summary")]


# --- the working folder ---------------------------------------------------------------------------------------------
def _houses(rng, n):
    import pandas as pd

    area = rng.uniform(40, 200, n).round(1)
    rooms = rng.integers(1, 6, n)
    city = rng.choice(["north", "south", "east"], n)
    price = (area * 3000 + rooms * 10000 + np.where(city == "north", 50000, 0) + rng.normal(0, 5000, n)).round()
    return pd.DataFrame({"area": area, "rooms": rooms, "city": city, "price": price})


def _write_files(root: Path) -> None:
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    _houses(rng, 80).to_csv(root / "houses.csv", index=False)
    _houses(rng, 20).to_csv(root / "new_labelled.csv", index=False)
    _houses(rng, 12).drop(columns="price").to_csv(root / "new.csv", index=False)
    new = _houses(rng, 12).drop(columns="price")
    new.insert(0, "id", range(100, 112))
    new.to_parquet(root / "new.parquet", index=False)

    n = 90
    age = rng.integers(12, 80, n).astype(float)
    age[[3, 17]] = np.nan
    people = pd.DataFrame({"id": range(n), "age": age, "zip": rng.choice(["10115", "20095", "80331"], n),
                           "visits": rng.poisson(3, n), "churned": rng.choice(["no", "yes"], n)})
    people.to_csv(root / "people.csv", index=False)

    y = rng.integers(0, 2, 60)
    x = rng.normal(0, 1, (60, 16, 2)).astype(np.float32) + y[:, None, None]
    np.savez(root / "signals.npz", x=x, y=y)

    for label, colour in (("cats", (200, 80, 40)), ("dogs", (40, 80, 200))):
        (root / "photos" / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(colour, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "photos" / label / f"{i}.png")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    cache = os.environ.get("NETKILN_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "netkiln-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for folder in ("conf", "examples"):         # the README's commands run from the repository root
            if (ROOT / folder).is_dir():
                shutil.copytree(ROOT / folder, root / folder)
        patch.setenv("NETKILN_CACHE_DIR", cache)
        _write_files(root)
        assert main(["train", "data=csv", "data.path=houses.csv", "data.target=price", *CAPS,
                     f"hydra.run.dir={HOUSES_RUN}"]) == 0
        assert main(["train", *CAPS, f"hydra.run.dir={DEFAULT_RUN}"]) == 0
        assert main(["train", "-m", "data=wine", "model=perceptron,mlp", *CAPS, f"hydra.sweep.dir={SWEEP}"]) == 0
        yield root


def _argv(command: Command, number: int) -> list[str]:
    """The command's arguments with RUN filled in, plus the caps for a training command."""
    args = list(command.words[1:])
    run = DEFAULT_RUN if args[0] == "train" else HOUSES_RUN
    args = [re.sub(r"=RUN$", f"={run}", arg) for arg in args]
    if args[0] != "train":
        return args
    args += CAPS
    if "-m" in args:
        if any(a.startswith(("hydra/sweeper=optuna", "hparams=")) for a in args):
            args += OPTUNA_CAPS
        if not any(a.startswith("hydra.sweep.dir=") for a in args):
            args.append(f"hydra.sweep.dir=sweeps/{number}")
    elif not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir=runs/{number}")
    return args


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_readme_command_runs(workdir, command, capsys):
    try:
        rc = main(_argv(command, command.line))
    except SystemExit as exit:          # Hydra's --help exits
        rc = exit.code
    err = capsys.readouterr().err
    assert rc == 0, f"README line {command.line}: {command.text}\n{err[-2000:]}"
