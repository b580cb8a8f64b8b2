"""cuda_graphs=true: chunks of training steps replayed as CUDA graphs (training/step_graph.py).

This machine has no GPU, so the capture itself (torch.cuda.graph) never runs here. The tests replace it with a
graph that records the captured body and replays it by calling it again: everything else runs as on a GPU (static
index and result buffers, in-place gradients, one shape eager then captured, the module's counters and metrics,
the fallback when capture fails) and must give the same weights as the eager steps.
"""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from netkiln.cli import main
from netkiln.training import step_graph
from netkiln.training.batches import TrainChunks
from conftest import tiny_run

# 300 rows: 210 train (7 batches of 32, the last of 18 rows), steps_per_execution=3: chunks of 3, 3 and 1 batches.
TINY = tiny_run(300, epochs=None) + ["trainer.max_epochs=4", "steps_per_execution=3"]


class ReplayByCalling:
    """Stands in for a CUDA graph: replay runs the captured body again on the same buffers."""
    captured = 0

    def __init__(self, body):
        self.body = body
        ReplayByCalling.captured += 1

    def replay(self):
        self.body()


@pytest.fixture
def graphs_on_cpu(monkeypatch):
    """cuda_graphs=true on this CPU: no obstacle, the optimizer left as built, graphs replayed by calling."""
    ReplayByCalling.captured = 0
    monkeypatch.setattr(step_graph, "graph_obstacle", lambda **_: None)
    monkeypatch.setattr(step_graph, "make_capturable", lambda optimizer, device: None)
    monkeypatch.setattr(step_graph.GraphedSteps, "_cuda_capture", lambda self, body: ReplayByCalling(body))


def train(tmp_path, name, *overrides):
    run_dir = tmp_path / name
    assert main(["train", *TINY, f"hydra.run.dir={run_dir}", *overrides]) == 0
    return run_dir


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def history(run_dir):
    return (run_dir / "history.csv").read_text().splitlines()


@pytest.mark.parametrize("overrides", [[], ["gradient_clip_val=0.5", "scheduler=step"], ["optimizer=sgd"]],
                         ids=["adam", "clip+epoch-scheduler", "sgd"])
def test_replayed_chunks_train_the_same_weights_as_eager_steps(tmp_path, graphs_on_cpu, overrides):
    eager = train(tmp_path, "eager", *overrides)
    graphed = train(tmp_path, "graphed", "cuda_graphs=true", *overrides)
    # Two chunk shapes (3 batches, and the epoch's last 1), each captured once, in epoch 2.
    assert ReplayByCalling.captured == 2
    a, b = weights(eager), weights(graphed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # The same epochs, steps and learning rates; losses summed in another order, so close rather than equal.
    rows_a, rows_b = history(eager), history(graphed)
    assert rows_a[0] == rows_b[0] and len(rows_a) == len(rows_b) == 5
    for line_a, line_b in zip(rows_a[1:], rows_b[1:]):
        fields_a, fields_b = line_a.split(","), line_b.split(",")
        assert fields_a[:3] == fields_b[:3]         # epoch, step, lr
        values_a = [float(v) for v in fields_a[4:] if v]
        values_b = [float(v) for v in fields_b[4:] if v]
        assert values_b == pytest.approx(values_a, rel=1e-5, abs=1e-6)


class NoHostSync(TorchDispatchMode):
    """Fails on the operations a CUDA graph cannot capture: a value read back to the host (.item(), float(), bool()
    of a tensor) or a shape that depends on the data (nonzero, masked_select, unique). The optimizer's step is
    let through: on a CPU it is not capturable (on a GPU make_capturable keeps its counters on the device)."""
    REFUSED = {"_local_scalar_dense", "nonzero", "masked_select", "unique_consecutive", "_unique2", "_unique"}

    def __init__(self):
        super().__init__()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.paused and name in self.REFUSED:
            raise AssertionError(f"aten.{name} inside a captured step: a CUDA graph cannot capture it")
        return func(*args, **(kwargs or {}))


class ReplayWithoutHostSync(ReplayByCalling):
    """A stricter stand-in: each replay runs the body under NoHostSync."""
    optimizer = None

    def replay(self):
        mode = NoHostSync()
        step = type(self.optimizer).step

        def unchecked_step(*args, **kwargs):
            mode.paused = True
            try:
                return step(self.optimizer, *args, **kwargs)
            finally:
                mode.paused = False
        self.optimizer.step = unchecked_step
        try:
            with mode:
                self.body()
        finally:
            del self.optimizer.step


SEQUENCE = "{reshape: [8, 1]}"
MODELS = {
    "mlp+batchnorm+dropout": "[{dense: {units: 16, activation: relu}}, batchnorm, {dropout: 0.3}]",
    "cnn": f"[{SEQUENCE}, {{conv1d: {{filters: 4, kernel_size: 3, activation: relu}}}}, {{maxpool1d: 2}}, "
           "flatten]",
    "gru": f"[{SEQUENCE}, {{gru: {{units: 6, bidirectional: true}}}}]",
    "lstm": f"[{SEQUENCE}, {{lstm: {{units: 6}}}}]",
}


@pytest.mark.parametrize("layers", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("task", [[], ["data.task=regression", "data.n_classes=1"], ["data.n_classes=2"]],
                         ids=["multiclass", "regression", "binary"])
def test_captured_steps_never_read_a_value_back_to_the_host(tmp_path, monkeypatch, layers, task):
    """What would break a real capture on the GPU: the body of a chunk (gather, forward, loss, backward, clip,
    the step's loss and correct count) must not read a tensor's value on the host."""
    monkeypatch.setattr(step_graph, "graph_obstacle", lambda **_: None)
    monkeypatch.setattr(step_graph, "make_capturable", lambda optimizer, device: None)

    def capture(self, body):
        graph = ReplayWithoutHostSync(body)
        graph.optimizer = self.optimizer
        return graph
    monkeypatch.setattr(step_graph.GraphedSteps, "_cuda_capture", capture)
    train(tmp_path, "graphed", "cuda_graphs=true", "trainer.max_epochs=2", "gradient_clip_val=1.0",
          f"model.layers={layers}", *task)


def test_max_steps_inside_a_chunk_stops_exactly(tmp_path, graphs_on_cpu):
    graphed = train(tmp_path, "graphed", "cuda_graphs=true", "+trainer.max_steps=11")
    eager = train(tmp_path, "eager", "+trainer.max_steps=11")
    a, b = weights(eager), weights(graphed)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert history(graphed)[-1].split(",")[1] == "11"


def test_a_failed_capture_trains_on_eagerly(tmp_path, monkeypatch):
    monkeypatch.setattr(step_graph, "graph_obstacle", lambda **_: None)
    monkeypatch.setattr(step_graph, "make_capturable", lambda optimizer, device: None)

    def refuse(self, body):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
    monkeypatch.setattr(step_graph.GraphedSteps, "_cuda_capture", refuse)
    graphed = train(tmp_path, "graphed", "cuda_graphs=true")
    eager = train(tmp_path, "eager")
    said = (graphed / "train.log").read_text()
    assert "capturing the training steps failed (operation not permitted when stream is capturing)" in said
    a, b = weights(eager), weights(graphed)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_on_a_cpu_the_run_trains_eagerly_and_says_why(tmp_path):
    run = train(tmp_path, "run", "cuda_graphs=true")
    said = (run / "train.log").read_text()
    assert "cuda_graphs: training eagerly, because training runs on cpu, not a CUDA device" in said


def test_cuda_graphs_must_be_a_boolean(tmp_path, capsys):
    assert main(["train", *TINY, f"hydra.run.dir={tmp_path / 'run'}", "cuda_graphs=maybe"]) == 2
    err = capsys.readouterr().err
    assert "cuda_graphs" in err and "must be true or false" in err and "Traceback" not in err


def _obstacle(**changes):
    network = torch.nn.Sequential(torch.nn.Linear(4, 3))
    optimizer = torch.optim.Adam(network.parameters())
    settings = dict(device=torch.device("cuda"), plain_step=True,
                    batches=TrainChunks(torch.zeros(10, 4), torch.zeros(10, dtype=torch.long), 5, 2, seed=0),
                    optimizer=optimizer, step_scheduler=False, scheduler=None, compiled=False, network=network)
    settings.update(changes)
    return step_graph.graph_obstacle(**settings)


def test_what_cannot_be_captured_is_named():
    network = torch.nn.Sequential(torch.nn.Linear(4, 3))
    sgd = torch.optim.SGD(network.parameters(), lr=0.1)
    assert _obstacle() is None
    assert _obstacle(optimizer=sgd) is None
    assert "not a CUDA device" in _obstacle(device=torch.device("cpu"))
    assert "Lightning's optimizer step" in _obstacle(plain_step=False)
    assert "steps after every batch" in _obstacle(step_scheduler=True)
    assert "compile is on" in _obstacle(compiled=True)
    assert "Adagrad cannot run inside a CUDA graph (it has no capturable mode)" in _obstacle(
        optimizer=torch.optim.Adagrad(network.parameters()))
    step = torch.optim.lr_scheduler.StepLR(sgd, 2)
    assert "SGD cannot run inside a CUDA graph with a scheduler" in _obstacle(optimizer=sgd, scheduler=step)
    cyclic = torch.optim.lr_scheduler.CyclicLR(torch.optim.Adam(network.parameters()), 0.01, 0.1,
                                               cycle_momentum=True)
    assert "momentum" in _obstacle(scheduler=cyclic)
    augmented = TrainChunks(torch.zeros(10, 4), torch.zeros(10), 5, 2, seed=0, inputs=lambda x: x)
    assert "augment" in _obstacle(batches=augmented)
    streamed = TrainChunks(torch.zeros(10, 4), torch.zeros(10), 5, 2, seed=0)
    streamed.stream_to = torch.device("cuda")
    assert "not resident" in _obstacle(batches=streamed)

    class Masked(torch.nn.Module):
        mask_zero = True
    assert "mask_zero" in _obstacle(network=torch.nn.Sequential(Masked()))


def test_capturable_optimizer_state_is_saved_as_the_config_built_it():
    """make_capturable moves lr and step counts to the device; the checkpoint gets plain numbers back, and loads
    into an optimizer built from the config (capturable off)."""
    torch.manual_seed(0)
    network = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    network(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    device = torch.device("cpu")        # stands in for the GPU: the same moves, on this machine's only device
    step_graph.make_capturable(optimizer, device)
    group = optimizer.param_groups[0]
    assert group["capturable"] is True and isinstance(group["lr"], torch.Tensor) and float(group["lr"]) == 0.01
    assert all(state["step"].dtype == torch.float32 for state in optimizer.state.values())

    checkpoint = {"optimizer_states": [copy.deepcopy(optimizer.state_dict())]}
    step_graph.portable_optimizer_state(checkpoint)
    saved = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert saved["lr"] == 0.01 and type(saved["lr"]) is float and saved["capturable"] is False
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)     # the live optimizer is left as it was
    # Without a deep copy (as Lightning saves it): state_dict() shares the per-parameter dicts with the optimizer.
    params = list(network.parameters())
    live_states = [optimizer.state[param] for param in params]
    steps = [state["step"] for state in live_states]
    saved = optimizer.state_dict()
    assert all(saved["state"][i] is live_states[i] for i in range(len(params)))
    step_graph.portable_optimizer_state({"optimizer_states": [saved]})
    assert saved["param_groups"][0]["lr"] == 0.01 and optimizer.param_groups[0]["capturable"] is True
    for i, param in enumerate(params):          # the saved entries were replaced; the live ones are as they were
        assert saved["state"][i] is not live_states[i] and optimizer.state[param] is live_states[i]
        assert optimizer.state[param]["step"] is steps[i] and saved["state"][i]["step"].device.type == "cpu"

    fresh = torch.optim.Adam(network.parameters(), lr=0.5)
    fresh.load_state_dict(checkpoint["optimizer_states"][0])
    network(torch.randn(3, 4)).sum().backward()
    fresh.step()                        # capturable off on a CPU: this would raise if the flag had been kept
    assert fresh.param_groups[0]["lr"] == 0.01


def test_image_standardize_statistics_are_made_once_per_device():
    """A captured step cannot copy from the host: PixelsToFloat keeps its statistics as device tensors."""
    from netkiln.data.dataset import PixelsToFloat

    pixels = PixelsToFloat({"mean": [0.5], "std": [0.25], "feature_axis": 0})
    x = torch.randint(0, 256, (2, 1, 3, 3), dtype=torch.uint8)
    first = pixels(x)
    cached = pixels._stats[("cpu", 4)]
    second = pixels(x)
    assert pixels._stats[("cpu", 4)] is cached and torch.equal(first, second)
    expected = ((x.double() / 255 - 0.5) / 0.25).float()
    assert torch.allclose(first, expected, atol=1e-6)
