"""Chunks of optimizer steps replayed as CUDA graphs (`cuda_graphs=true`).

A small model's training step on a GPU is launch-bound: the GPU idles while Python launches a few hundred small
kernels. A chunk of steps (gather each batch's rows, forward, loss, backward, clip, optimizer step, the step's loss
and correct count) captured once as a CUDA graph is replayed with one launch; only the chunk's row indices are
copied in first.

A replay repeats the captured kernels on the captured memory, so everything a step reads or writes exists before
capture and is never replaced:
- the training tensors are resident on the GPU and each step gathers its rows through a static index buffer;
- gradients are zeroed in place (set_to_none=False), never freed;
- the optimizer keeps its step counts and learning rate on the GPU (capturable=True, the learning rate a tensor that
  the schedulers fill), so a replay uses the current learning rate;
- each step's loss and correct count land in static buffers the module sums after the replay.
A chunk shape (its row count: the full chunks, and the epoch's last one) runs eagerly the first time, on a side
stream (cuBLAS/cuDNN set-up and the optimizer's state are made there), and is captured the second time; the shapes
share one memory pool. A run that cannot be captured trains eagerly and the log says why (`graph_obstacle`).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("netkiln")


def count_correct(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Rows predicted right in a training batch (None for regression), computed on the device."""
    if kind == "multiclass":
        return (out.detach().argmax(-1) == y).sum()
    if kind == "binary":
        return ((out.detach().reshape(-1) > 0).long() == y).sum()
    return None


def graph_obstacle(*, device: torch.device, plain_step: bool, batches, optimizer, step_scheduler: bool,
                   scheduler, compiled: bool, network: torch.nn.Module) -> str | None:
    """Why this run's steps cannot be captured as CUDA graphs, or None when they can."""
    from netkiln.data.dataset import PixelsToFloat
    from netkiln.training.batches import TrainChunks

    if device.type != "cuda":
        return f"training runs on {device.type}, not a CUDA device"
    if not plain_step:
        return "this run takes Lightning's optimizer step (several devices, a mixed-precision scaler, or a " \
               "callback's per-step hooks)"
    if type(batches) is not TrainChunks or batches.stream_to is not None:
        return "the training data is not resident on the GPU (streamed, or too large for its memory)"
    inputs = batches.inputs
    if inputs is not None and not (isinstance(inputs, PixelsToFloat) and inputs.augment is None):
        return "data.augment draws its random transforms on the host"
    if compiled:
        return "compile is on (torch.compile(mode='reduce-overhead') captures graphs its own way)"
    if step_scheduler:
        return "the scheduler steps after every batch (scheduler.interval=step); a graph holds a chunk of steps"
    if "capturable" not in optimizer.defaults and not (type(optimizer) is torch.optim.SGD and scheduler is None):
        return f"{type(optimizer).__name__} cannot run inside a CUDA graph" + (
            " with a scheduler (its learning rate would stay the captured one)"
            if type(optimizer) is torch.optim.SGD else " (it has no capturable mode)")
    if scheduler is not None and getattr(scheduler, "cycle_momentum", False):
        return f"{type(scheduler).__name__} changes the optimizer's momentum, which a graph would keep as captured"
    if any(getattr(m, "mask_zero", False) for m in network.modules()):
        return "mask_zero layers read their sequence lengths on the host (packed sequences)"
    return None


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Step counts and learning rate on the device, so a captured step reads them there (see the module doc).
    Undone in the checkpoint by `portable_optimizer_state`, so a checkpoint loads into any optimizer."""
    for group in optimizer.param_groups:
        if "capturable" not in group:       # SGD: no step count; its constant learning rate is captured
            continue
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            # float64: the configured value exactly (history.csv, checkpoints); a 0-dim tensor keeps the float32
            # maths float32.
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float64, device=device)
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if isinstance(state.get("step"), torch.Tensor) and state["step"].device != device:
                state["step"] = state["step"].to(device=device, dtype=torch.float32)


def portable_optimizer_state(checkpoint: dict) -> None:
    """A checkpoint's optimizer settings as plain numbers, capturable off and step counts on the CPU, as the config
    built them. Entries are replaced, never changed in place: state_dict() shares them with the live optimizer."""
    for state in checkpoint.get("optimizer_states", []):
        for group in state.get("param_groups", []):
            if isinstance(group.get("lr"), torch.Tensor):
                group["lr"] = float(group["lr"])
            if group.get("capturable"):
                group["capturable"] = False
        per_param = state.get("state", {})
        for index, values in per_param.items():
            if isinstance(values.get("step"), torch.Tensor):
                per_param[index] = {**values, "step": values["step"].detach().to("cpu", torch.float32)}


class _Shape:
    """The static buffers of one chunk shape and, once captured, its graph."""

    def __init__(self, rows: int, batch_size: int, device: torch.device):
        self.spans = [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]
        self.index = torch.zeros(rows, dtype=torch.long, device=device)
        self.losses = torch.zeros(len(self.spans), dtype=torch.float32, device=device)
        self.correct = torch.zeros(len(self.spans), dtype=torch.long, device=device)
        self.batch_rows = torch.tensor([stop - start for start, stop in self.spans], dtype=torch.float32,
                                       device=device)
        self.graph = None
        self.warmed = False


class GraphedSteps:
    """Runs a chunk's optimizer steps: eagerly the first time a chunk shape is seen, then as a CUDA graph replay.

    `capture` makes the graph (torch.cuda.graph on a GPU); tests on a CPU pass one that records the body and
    replays it by calling it again, which exercises everything here but the capture itself.
    """

    def __init__(self, batches, network, loss_fn, optimizer, *, kind: str, clip: float | None,
                 device: torch.device, capture=None):
        self.batches, self.network, self.loss_fn, self.optimizer = batches, network, loss_fn, optimizer
        self.kind, self.clip, self.device = kind, clip, device
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.capture = capture or self._cuda_capture
        self.pool = None                        # the memory pool this run's graphs share
        self.shapes: dict[int, _Shape] = {}
        self.failed: str | None = None          # why capture failed: the rest of the run is eager

    def run(self, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """One optimizer step per batch of `chunk` (row indices on the device): (each step's loss, the summed
        loss x rows, the summed correct count, rows)."""
        shape = self.shapes.get(len(chunk))
        if shape is None:
            shape = self.shapes[len(chunk)] = _Shape(len(chunk), self.batches.batch_size, self.device)
        shape.index.copy_(chunk)
        if shape.graph is not None:
            shape.graph.replay()
        elif shape.warmed and self.failed is None:
            try:
                shape.graph = self.capture(lambda: self._steps(shape))
            except Exception as err:        # noqa: BLE001 - any capture failure: train on, eagerly
                self.failed = str(err).splitlines()[0] if str(err) else type(err).__name__
                log.warning("cuda_graphs: capturing the training steps failed (%s); training eagerly", self.failed)
                self._eager(shape)
            else:
                shape.graph.replay()
        else:
            self._eager(shape)
            shape.warmed = True
        weighted = (shape.losses * shape.batch_rows).sum()
        return shape.losses, weighted, shape.correct.sum(), len(chunk)

    def _cuda_capture(self, body):
        """`body` as a CUDA graph; a run's shapes share one memory pool (their graphs never run at once)."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a CUDA call from another thread (a background writer) does not spoil the capture.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            body()
        return graph

    def _eager(self, shape: _Shape) -> None:
        if self.device.type != "cuda":
            self._steps(shape)
            return
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._steps(shape)
        torch.cuda.current_stream(self.device).wait_stream(side)

    def _steps(self, shape: _Shape) -> None:
        """The captured body: reads only shape.index and the resident tensors, writes only in place."""
        x, y, inputs = self.batches.x, self.batches.y, self.batches.inputs
        network, loss_fn, optimizer = self.network, self.loss_fn, self.optimizer
        for step, (start, stop) in enumerate(shape.spans):
            rows = shape.index[start:stop]
            xb, yb = x.index_select(0, rows), y.index_select(0, rows)
            if inputs is not None:
                xb = inputs(xb)
            out = network(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            optimizer.step()
            shape.losses[step].copy_(loss.detach())
            correct = count_correct(self.kind, out, yb)
            if correct is not None:
                shape.correct[step].copy_(correct)
