"""End-to-end training on tiny data, in-process through the CLI."""
import csv
import json

import pytest
import torch

from netkiln.cli import main
from conftest import ROOT, tiny_run

TINY = tiny_run(300, epochs=None)


def train(tmp_path, *overrides, name="run"):
    run_dir = tmp_path / name
    rc = main(["train", *TINY, f"hydra.run.dir={run_dir}", *overrides])
    return rc, run_dir


def read_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_train_writes_run_directory(tmp_path):
    rc, run = train(tmp_path, "trainer.max_epochs=3")
    assert rc == 0
    for name in ("summary.txt", "metrics.json", "history.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 ".hydra/config.yaml", "train.log"):
        assert (run / name).exists(), name
    metrics = read_metrics(run)
    assert metrics["status"] == "ok" and metrics["epochs"] == 3
    assert set(metrics["test"]) == {"loss", "acc", "f1"}
    assert metrics["monitor"] == "val/acc" and metrics["monitored"] == metrics["val"]["acc"]
    assert metrics["params"]["total"] == metrics["params"]["trainable"] > 0
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "lr"} <= set(rows[0])
    # one optimizer step per batch: 210 training rows / 32 = 7 batches an epoch
    assert metrics["steps"] == 3 * 7 and int(rows[-1]["step"]) == 21


def test_the_last_log_line_counts_one_epoch_in_the_singular(tmp_path):
    rc, run = train(tmp_path, "trainer.max_epochs=1")
    said = (run / "train.log").read_text()
    assert rc == 0 and ", 1 epoch; val: " in said and "1 epochs" not in said


def test_training_learns_synthetic_data(tmp_path):
    rc, run = train(tmp_path, "trainer.max_epochs=15", "optimizer.lr=0.01")
    assert rc == 0
    assert read_metrics(run)["test"]["acc"] > 0.8


def test_same_seed_same_result(tmp_path):
    train(tmp_path, "trainer.max_epochs=2", name="a")
    train(tmp_path, "trainer.max_epochs=2", name="b")
    assert read_metrics(tmp_path / "a")["val"] == read_metrics(tmp_path / "b")["val"]


def test_chunked_steps_equal_one_step_per_lightning_step(tmp_path):
    """steps_per_execution only amortizes overhead: the maths must be identical."""
    train(tmp_path, "trainer.max_epochs=3", "steps_per_execution=1", name="one")
    train(tmp_path, "trainer.max_epochs=3", "steps_per_execution=5", name="five")
    one, five = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "five")
    assert one["steps"] == five["steps"]
    for key, value in one["val"].items():
        assert five["val"][key] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("scheduler", ["cosine", "plateau", "onecycle", "step"])
def test_schedulers(tmp_path, scheduler):
    rc, run = train(tmp_path, f"scheduler={scheduler}", "trainer.max_epochs=2")
    assert rc == 0
    rows = list(csv.DictReader(open(run / "history.csv")))
    if scheduler in ("cosine", "onecycle"):
        assert float(rows[1]["lr"]) != float(rows[0]["lr"])


@pytest.mark.parametrize("optimizer, state_key", [("adam", "exp_avg"), ("adamw", "exp_avg"),
                                                  ("sgd", "momentum_buffer"), ("rmsprop", "square_avg")])
def test_optimizers(tmp_path, optimizer, state_key):
    """The checkpoint's optimizer is the chosen one, with its config's settings, and it has stepped."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    rc, run = train(tmp_path, f"optimizer={optimizer}", "trainer.max_epochs=1")
    assert rc == 0
    conf = OmegaConf.to_container(OmegaConf.load(ROOT / "src/netkiln/conf/optimizer" / f"{optimizer}.yaml"))
    cls = get_class(conf.pop("_target_"))
    conf.pop("_partial_")
    expected = cls([torch.zeros(1, requires_grad=True)], **conf).param_groups[0]
    (saved,) = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["optimizer_states"]
    group = saved["param_groups"][0]
    assert {k: group[k] for k in expected if k != "params"} == {k: v for k, v in expected.items() if k != "params"}
    assert saved["state"] and all(state_key in state for state in saved["state"].values())
    assert read_metrics(run)["steps"] == 7            # 210 training rows / 32


def test_regression_task_monitors_val_loss(tmp_path):
    rc, run = train(tmp_path, "data.task=regression", "loss=huber", "trainer.max_epochs=2")
    assert rc == 0
    metrics = read_metrics(run)
    assert metrics["monitor"] == "val/loss" and metrics["mode"] == "min"
    assert set(metrics["test"]) == {"loss", "mse", "mae", "r2"}


def test_multi_target_regression(tmp_path):
    rc, run = train(tmp_path, "data.task=regression", "data.n_targets=2", "trainer.max_epochs=2")
    assert rc == 0
    metrics = read_metrics(run)
    assert all(isinstance(v, float) for v in metrics["test"].values())


def test_binary_task_uses_bce(tmp_path):
    rc, run = train(tmp_path, "data.task=binary", "trainer.max_epochs=2", "monitor=val/auroc")
    assert rc == 0
    metrics = read_metrics(run)
    assert metrics["loss"] == "bce" and "auroc" in metrics["test"]


def test_resume_continues_from_last_checkpoint(tmp_path):
    rc, run = train(tmp_path, "trainer.max_epochs=2", "callbacks=none")
    assert rc == 0
    rc = main(["train", *TINY, f"hydra.run.dir={run}", "trainer.max_epochs=4", "callbacks=none", "resume=true"])
    assert rc == 0
    train(tmp_path, "trainer.max_epochs=4", "callbacks=none", name="straight")
    resumed, straight = read_metrics(run), read_metrics(tmp_path / "straight")
    assert resumed["steps"] == straight["steps"]
    assert resumed["val"]["loss"] == pytest.approx(straight["val"]["loss"], abs=1e-5)
    assert len(list(csv.DictReader(open(run / "history.csv")))) == 4


def test_nan_loss_stops_with_a_clear_error(tmp_path, capsys):
    rc, run = train(tmp_path, "optimizer=sgd", "optimizer.lr=1e30", "trainer.max_epochs=3")
    assert rc == 2
    err = capsys.readouterr().err
    assert "epoch" in err and "lower learning rate" in err
    assert read_metrics(run)["status"] == "failed"


@pytest.mark.parametrize("override, key", [
    ("trainer.max_epoch=3", "trainer.max_epoch"),
    ("trainer.max_epochs=-3", "trainer.max_epochs"),
    ("monitor=val/accuracy", "monitor"),
    ("loss=mse", "loss"),
    ("optimizer.lrr=0.1", "optimizer.lrr"),
    ("batch_size=0", "batch_size"),
    ("threads=0", "threads"),
    ("+callbacks.early_stopping.patiense=3", "callbacks.early_stopping.patiense"),
])
def test_config_errors_name_the_key(tmp_path, capsys, override, key):
    rc, run = train(tmp_path, override)
    assert rc == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    # Refused while composing: no run directory; refused in the run: its metrics.json says why.
    assert not run.exists() or read_metrics(run) == {"status": "failed", "error": read_metrics(run)["error"]}
    assert not run.exists() or key in read_metrics(run)["error"]


def test_training_data_too_large_for_the_device_streams_from_host(monkeypatch):
    """On a GPU without room for the data, chunks are copied over one by one (logic checked on CPU)."""
    from netkiln.training import batches

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 4000))
    assert batches._fits_on(torch.device("cuda"), 500) and not batches._fits_on(torch.device("cuda"), 501)
    assert batches._fits_on(torch.device("cpu"), 10**12)

    x, y = torch.arange(40.0).reshape(20, 2), torch.arange(20)
    chunks = batches.TrainChunks(x, y, batch_size=4, batches_per_chunk=2, seed=0)
    chunks.stream_to = torch.device("cpu")          # what to() sets for a device without room
    seen = torch.cat([chunks.batch(idx)[0] for idx in chunks])
    assert sorted(seen[:, 0].tolist()) == sorted(x[:, 0].tolist())


def test_ddp_ranks_train_on_disjoint_equal_shares():
    from netkiln.training.batches import TrainChunks

    x, y = torch.arange(22.0).reshape(11, 2), torch.arange(11)
    ranks = [TrainChunks(x, y, batch_size=2, batches_per_chunk=2, seed=0) for _ in range(2)]
    for rank, chunks in enumerate(ranks):
        chunks.shard(rank, 2)
    rows = [torch.cat(list(chunks)).tolist() for chunks in ranks]
    assert len(rows[0]) == len(rows[1]) == 5 and not set(rows[0]) & set(rows[1])
    assert ranks[0].num_batches == 3 and len(ranks[0]) == 2


def test_max_steps_stops_inside_a_chunk(tmp_path):
    rc, run = train(tmp_path, "trainer.max_epochs=10", "+trainer.max_steps=7", "steps_per_execution=64")
    assert rc == 0
    assert read_metrics(run)["steps"] == 7


def test_lightning_validation_loop_gives_the_fused_numbers(tmp_path):
    """Validation inside the module (default) and in Lightning's loop (any other schedule) agree."""
    train(tmp_path, "trainer.max_epochs=3", name="fused")
    train(tmp_path, "trainer.max_epochs=3", "+trainer.limit_val_batches=5", name="loop")
    fused, loop = read_metrics(tmp_path / "fused"), read_metrics(tmp_path / "loop")
    assert fused["val"] == loop["val"] and fused["test"] == loop["test"]
    assert (tmp_path / "fused" / "history.csv").read_text().count("\n") == 4


@pytest.mark.parametrize("mode, values, stop_epoch", [
    ("max", [0.5, 0.6, 0.6, 0.61, 0.605, 0.6], 3),       # min_delta 0.02: 0.61 is no improvement on 0.6
    ("min", [1.0, 0.9, 0.95, 0.85, 0.86, 0.87], 5),
])
def test_early_stopping_matches_lightning(mode, values, stop_epoch):
    """The float fast path decides as Lightning's EarlyStopping does, epoch by epoch."""
    from pytorch_lightning.callbacks import EarlyStopping

    from netkiln.training.callbacks import NetkilnEarlyStopping

    ours = NetkilnEarlyStopping(monitor="m", mode=mode, patience=2, min_delta=0.02)
    theirs = EarlyStopping(monitor="m", mode=mode, patience=2, min_delta=0.02)
    for epoch, value in enumerate(values):
        stop_a, _ = ours._evaluate_stopping_criteria(torch.tensor(value))
        stop_b, _ = theirs._evaluate_stopping_criteria(torch.tensor(value))
        assert (stop_a, ours.wait_count, float(ours.best_score)) == (stop_b, theirs.wait_count,
                                                                      float(theirs.best_score)), epoch
        if stop_a:
            assert epoch == stop_epoch
            break
    else:
        pytest.fail("never stopped")


def test_compile_trains_the_same_network(tmp_path):
    """compile=... wraps the training forward in torch.compile (dynamo's eager backend here: no C++ toolchain)."""
    assert train(tmp_path, "trainer.max_epochs=2", name="plain")[0] == 0
    assert train(tmp_path, "trainer.max_epochs=2", "compile={backend: eager}", name="compiled")[0] == 0
    plain, compiled = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "compiled")
    for split in ("val", "test"):
        for key, value in plain[split].items():
            assert compiled[split][key] == pytest.approx(value, abs=1e-5), (split, key)
    weights = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(name.startswith("network.") for name in weights)         # no compiled wrapper's copy


def test_compile_argument_typo_names_the_key(tmp_path, capsys):
    rc, _ = train(tmp_path, "compile={mdoe: max-autotune}")
    assert rc == 2
    err = capsys.readouterr().err
    assert "compile.mdoe" in err and "Did you mean 'mode'?" in err and "Traceback" not in err


def test_bf16_mixed_precision_on_cpu_takes_the_precision_plugin_path(tmp_path, monkeypatch):
    """Every optimizer step goes through Lightning's MixedPrecision plugin (not the plain torch step), under bf16
    autocast."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    steps, autocast = [], []
    plugin_step = MixedPrecision.optimizer_step

    def counting_step(self, optimizer, model, closure, **kwargs):
        steps.append(1)
        # the step runs inside training_step, so inside the plugin's bf16 autocast context
        autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return plugin_step(self, optimizer, model, closure, **kwargs)

    monkeypatch.setattr(MixedPrecision, "optimizer_step", counting_step)
    rc, run = train(tmp_path, "trainer.max_epochs=2", "trainer.precision=bf16-mixed")
    assert rc == 0 and read_metrics(run)["steps"] > 0
    assert len(steps) == read_metrics(run)["steps"] == 2 * 7 and all(autocast)


def test_validation_every_second_epoch(tmp_path):
    """Train metrics are in history.csv every epoch; validation (and best.ckpt) follows its own schedule."""
    rc, run = train(tmp_path, "trainer.max_epochs=4", "+trainer.check_val_every_n_epoch=2")
    assert rc == 0
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert all(row["train/loss"] for row in rows)
    assert [bool(row["val/loss"]) for row in rows] == [False, True, False, True]
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] in (1, 3)


def test_no_validation_with_a_validation_monitor_is_a_config_error(tmp_path, capsys):
    rc, run = train(tmp_path, "+trainer.limit_val_batches=0")
    assert rc == 2
    err = capsys.readouterr().err
    assert "monitor" in err and "limit_val_batches" in err and "Traceback" not in err
    rc, run = train(tmp_path, "+trainer.limit_val_batches=0", "monitor=train/loss", name="train_monitor")
    assert rc == 0
