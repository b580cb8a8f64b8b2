"""compile_model: walk the spec entries, inferring each output shape from the previous one."""
from __future__ import annotations

import importlib
import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn


from netkiln.config_values import to_container
from netkiln.errors import did_you_mean
from netkiln.trust import TRUSTED_MODULES, is_trusted_target, trusted_module

from .errors import LayerError, ModelSpecError, describe, fmt_shape
from .layers import REGISTRY, image_rows_shape
from .network import Network, Row
from .spec import Entry, parse_entry

log = logging.getLogger("netkiln")

# `vars`: named values the layers interpolate (`filters: ${model.vars.width}`), so one override or
# sweep parameter (`model.vars.width=32`) changes every layer that uses it.
MODEL_KEYS = ("layers", "head", "name", "description", "vars")
HEAD_MODES = ("auto", "none")


def _check_input_shape(shape: Any) -> tuple:
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ModelSpecError(f"input shape must be a tuple of sizes without the batch dim, got {shape!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise ModelSpecError(f"input shape must be non-empty positive sizes, got {shape!r}")
    return shape


class Built(NamedTuple):
    """One compiled entry: its module, output shape, summary name and rows (its own, then nested ones), and whether
    its output is a sequence whose padded steps are known (after an embedding with mask_zero)."""
    module: nn.Module
    shape: tuple
    name: str
    rows: list
    masked: bool = False


class _Builder:
    def __init__(self, allow_targets: bool, only_trusted: bool = False, vocab_size: int | None = None):
        self.allow_targets = allow_targets
        self.only_trusted = only_trusted
        self.vocab_size = vocab_size    # the data's vocabulary (text): an embedding's default input_dim
        self.counts: Counter = Counter()
        self.notes: list[str] = []      # what the compiler decided for the user, logged once per compile
        self.masked = False             # whether any embedding has mask_zero: the network then runs run_masked

    def name(self, base: str) -> str:
        """Keras naming: dense, dense_1, dense_2, ... counted across the whole model."""
        n = self.counts[base]
        self.counts[base] += 1
        return base if n == 0 else f"{base}_{n}"

    def build(self, raw: Any, shape: tuple, key: str, depth: int, masked: bool = False) -> Built:
        """One entry on inputs of `shape` (`masked`: a sequence with known padded steps)."""
        entry = parse_entry(raw, key)
        if entry.kind == "layer":
            return self._layer(entry, shape, depth, masked)
        if entry.kind == "target":
            return self._target(entry, shape, depth, masked)
        if entry.kind == "parallel":
            return self._parallel(entry, shape, depth, masked)
        return self._composite(entry, shape, depth, masked)

    def _embedding_args(self, entry: Entry) -> dict:
        """input_dim from the data's vocabulary when the config leaves it out."""
        args = dict(entry.args)
        if args["input_dim"] is None:
            if self.vocab_size is None:
                raise ModelSpecError("the data has no vocabulary (it is not a text dataset), so input_dim cannot be "
                                     "inferred; write input_dim: the number of distinct ids (the largest id + 1)",
                                     key=f"{entry.key}.input_dim", layer=entry.name)
            args["input_dim"] = self.vocab_size
        elif self.vocab_size is not None and args["input_dim"] < self.vocab_size:
            raise ModelSpecError(f"input_dim {args['input_dim']} is smaller than the data's vocabulary of "
                                 f"{self.vocab_size} ids; leave input_dim out to use the vocabulary's size",
                                 key=f"{entry.key}.input_dim", layer=entry.name)
        return args

    def _layer(self, entry: Entry, shape: tuple, depth: int, masked: bool) -> Built:
        layer = REGISTRY[entry.name]
        args = self._embedding_args(entry) if entry.name == "embedding" else entry.args
        try:
            module, out = layer.build(args, shape)
        except LayerError as e:
            key = f"{entry.key}.{e.arg}" if e.arg else entry.key
            raise ModelSpecError(e.message, key=key, layer=entry.name) from None
        except RuntimeError as e:       # weights too large to allocate, or (on the meta device) to even count
            if "allocat" not in str(e) and "overflow" not in str(e):
                raise
            reason = re.sub(r"^\[enforce fail[^\]]*\]\s*(err == 0\.\s*)?", "", str(e).splitlines()[0])
            raise ModelSpecError(f"this layer's weights are too large to allocate ({reason}); use fewer units or "
                                 "filters.", key=entry.key, layer=entry.name) from None
        rows = [Row(self.name(entry.name), layer.keras_type, out, module, depth, entry.key)]
        if getattr(module, "image_rows", None) is not None:
            rows.insert(0, self._image_rows(entry, shape, module.image_rows, depth))
        if entry.name == "embedding" and args["mask_zero"]:
            self.masked = True
            return Built(module, out, rows[-1].name, rows, True)
        return Built(module, out, rows[-1].name, rows, self._still_masked(entry, module, shape, out, masked))

    def _still_masked(self, entry: Entry, module: nn.Module, shape: tuple, out: tuple, masked: bool) -> bool:
        """Whether the padded steps are still known after this layer (modules.run_masked's rule); a note when a
        layer reads them as data."""
        if not masked:
            return False
        if hasattr(module, "forward_masked"):       # conv, pooling, rnn: while they return sequences
            return len(out) == 2
        if len(out) == 2 and out[0] == shape[0]:    # dense, dropout, norms, activations: step by step
            return True
        self.notes.append(f"{entry.key} ({entry.name}) reads the padded steps of its input {fmt_shape(shape)} as "
                          "data: padding can change its output. To ignore padding, end the sequence part with a "
                          "global pooling layer or a recurrent layer (they skip padded steps)")
        return False

    def _image_rows(self, entry: Entry, shape: tuple, module: nn.Module, depth: int) -> Row:
        """Say, in a note and as a summary row, that a recurrent layer reads images row by row."""
        rows = image_rows_shape(shape)
        self.notes.append(f"{entry.key} ({entry.name}) reads the images {fmt_shape(shape)} as sequences of their "
                          f"{rows[0]} rows of {rows[1]} values (T = H, F = C·W)")
        return Row(self.name("image_rows"), "Reshape", rows, module, depth, entry.key)

    def _composite(self, entry: Entry, shape: tuple, depth: int, masked: bool) -> Built:
        name = self.name(entry.name)
        modules, rows, cur, cur_masked = [], [], shape, masked
        for rep in range(entry.times):
            for j, child in enumerate(entry.children):
                built = self.build(child, cur, f"{entry.children_key}[{j}]", depth + 1, cur_masked)
                modules.append(built.module)
                rows += built.rows
                cur, cur_masked = built.shape, built.masked
        body = nn.Sequential(*modules)
        if entry.kind == "residual":
            if cur != shape:
                raise ModelSpecError(
                    f"the residual branch outputs {fmt_shape(cur)} but its input is {fmt_shape(shape)}; "
                    "y = x + f(x) needs equal shapes (keep units/filters equal to the input width, "
                    "padding: same, strides 1)", key=entry.key, layer="residual")
            from .modules import Residual
            module, type_ = Residual(body), "Residual"
        else:
            module, type_ = body, "Repeat"
        return Built(module, cur, name, [Row(name, type_, cur, module, depth, entry.key), *rows], cur_masked)

    def _parallel(self, entry: Entry, shape: tuple, depth: int, masked: bool) -> Built:
        """Each branch on the same input; outputs concatenated on the feature axis (channels of images (C, H, W),
        the last axis otherwise), so they must agree on every other axis."""
        from .modules import Parallel

        name = self.name(entry.name)
        branches, rows, outs, kept = [], [], [], []
        for i, branch in enumerate(entry.children):
            modules, cur, cur_masked = [], shape, masked
            for j, child in enumerate(branch):
                built = self.build(child, cur, f"{entry.children_key}[{i}][{j}]", depth + 1, cur_masked)
                modules.append(built.module)
                rows += built.rows
                cur, cur_masked = built.shape, built.masked
            branches.append(nn.Sequential(*modules))
            outs.append(cur)
            kept.append(cur_masked)
        axis = 0 if len(outs[0]) == 3 else len(outs[0]) - 1      # in the shape without the batch dim
        for i, out in enumerate(outs[1:], start=1):
            if len(out) != len(outs[0]) or any(a != b for k, (a, b) in enumerate(zip(out, outs[0])) if k != axis):
                raise ModelSpecError(
                    f"branch {i} outputs {fmt_shape(out)} but branch 0 outputs {fmt_shape(outs[0])}; the outputs are "
                    f"concatenated on the feature axis, so they must agree on every other axis (same sequence "
                    "length: padding: same, or end each branch with a global pooling layer)",
                    key=f"{entry.children_key}[{i}]", layer="parallel")
        out = tuple(sum(o[axis] for o in outs) if k == axis else d for k, d in enumerate(outs[0]))
        module = Parallel(branches, dim=axis + 1)
        return Built(module, out, name, [Row(name, "Parallel", out, module, depth, entry.key), *rows],
                     all(kept) and len(out) == 2)

    def _target(self, entry: Entry, shape: tuple, depth: int, masked: bool) -> Built:
        path, key = entry.name, entry.key
        if not self.allow_targets:
            raise ModelSpecError(f"_target_ entries ({path}) are not allowed here; use the built-in "
                                 "layer names", key=key)
        if self.only_trusted and not is_trusted_target(path, "model"):
            # Checked before importing anything: naming a module must not run its code.
            why = ("names a private attribute; a config may only name public torch.nn classes"
                   if any(part.startswith("_") for part in path.split(".")) else
                   "is not a torch.nn class; a config may only name those (netkiln does not import other code named "
                   "in a config)")
            raise ModelSpecError(f"_target_ '{path}' {why}. If you trust this config, pass allow_targets=true.",
                                 key=f"{key}._target_")
        cls = _resolve(path, key)
        if self.only_trusted and isinstance(cls, type) and not trusted_module(cls.__module__, "model"):
            # `torch.nn.modules.module.torch.jit.ScriptModule` reaches a class defined outside torch.nn.
            raise ModelSpecError(f"_target_ '{path}' is {cls.__module__}.{cls.__qualname__}, not a class of "
                                 f"{' / '.join(TRUSTED_MODULES['model'])}; pass allow_targets=true "
                                 "if you trust this config", key=f"{key}._target_")
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ModelSpecError(f"_target_ {path} is not a torch.nn.Module class", key=f"{key}._target_")
        try:
            module = cls(**entry.args)
        except Exception as e:  # any constructor complaint is a config error here
            raise ModelSpecError(f"{path}({_kwargs(entry.args)}) failed: {e}", key=key) from None
        out = _dry_forward(module, shape, path, key)
        name = self.name(cls.__name__.lower())
        if masked:
            self.notes.append(f"{key} ({path}) is not told which steps are padding: padding can change its output")
        still = masked and len(out) == 2 and out[0] == shape[0]
        return Built(module, out, name, [Row(name, cls.__name__, out, module, depth, key)], still)


def _kwargs(kw: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())


def _resolve(path: str, key: str):
    """Import `pkg.module.Attr` by importing the longest importable module prefix."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise ModelSpecError(f"cannot find '{attr}' in {obj.__name__ if hasattr(obj, '__name__') else obj}."
                                     + did_you_mean(attr, [n for n in dir(obj) if not n.startswith("_")]),
                                     key=f"{key}._target_")
            obj = getattr(obj, attr)
        return obj
    raise ModelSpecError(f"cannot import _target_ '{path}'", key=f"{key}._target_")


def _dry_forward(module: nn.Module, shape: tuple, path: str, key: str) -> tuple:
    """Output shape of an arbitrary module from a zero batch of 2 (eval mode: no stat updates)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            y = module(torch.zeros((2, *shape)))
    except Exception as e:
        raise ModelSpecError(f"{path} failed a dry forward pass on input {describe(shape)}: {e}",
                             key=key) from None
    finally:
        module.train(was_training)
    if not isinstance(y, torch.Tensor):
        raise ModelSpecError(f"{path} returned {type(y).__name__}, not a tensor; wrap it or use a "
                             "built-in layer (e.g. lstm/gru instead of torch.nn.LSTM)", key=key)
    if y.dim() < 2 or y.shape[0] != 2:
        raise ModelSpecError(f"{path} changed the batch dimension (input {fmt_shape(shape)}, "
                             f"output {tuple(y.shape)} for a batch of 2)", key=key)
    return tuple(y.shape[1:])


def _head_mode(cfg: dict, key: str) -> str:
    head = cfg.get("head", "auto")
    if head is None or head is False:
        return "none"
    if isinstance(head, str) and head.lower() in HEAD_MODES:
        return head.lower()
    raise ModelSpecError(f"head must be 'auto' or 'none', got {head!r}."
                         + (did_you_mean(head, HEAD_MODES) if isinstance(head, str) else ""),
                         key=f"{key}.head")


def _task_text(task) -> str:
    return f"{task.kind} task with {task.num_outputs} output{'s' if task.num_outputs != 1 else ''}"


def compile_model(model_cfg: Any, input_shape: Any, task, key: str = "model",
                  allow_targets: bool = True, only_trusted: bool = False,
                  memory_copies: int = 1, vocab_size: int | None = None) -> Network:
    """Build the Network for `model_cfg` on inputs of `input_shape` (no batch dim) for `task`.

    `vocab_size`: the data's vocabulary when its rows are token ids (text); an embedding's input_dim defaults to
    it, and the model must start with an embedding.

    `_target_` entries: refused when not `allow_targets`; else, with `only_trusted`, only the public torch.nn
    classes netkiln.trust allows; any torch.nn.Module subclass otherwise.
    The model is first planned on the meta device (shapes, no memory) and refused when `memory_copies` copies of
    its weights (training: 4, for weights, gradients and two optimizer moments) exceed the available memory.
    """
    planned = plan_model(model_cfg, input_shape, task, key, allow_targets, only_trusted, vocab_size)
    if planned is not None:
        check_model_memory(planned, memory_copies)
    network = _compile(model_cfg, input_shape, task, key, allow_targets, only_trusted, vocab_size)
    for note in network.notes:      # here, not in _compile: the plan above would say it twice
        log.info("%s", note)
    return network


def plan_model(model_cfg: Any, input_shape: Any, task, key: str = "model", allow_targets: bool = True,
               only_trusted: bool = False, vocab_size: int | None = None) -> Network | None:
    """The Network built on the meta device: every shape and parameter count, no memory allocated.

    None when it cannot be planned there (a `_target_` module without meta support); the real build then reports
    whatever is wrong.
    """
    try:
        with torch.device("meta"):
            return _compile(model_cfg, input_shape, task, key, allow_targets, only_trusted, vocab_size)
    except ModelSpecError as err:
        if "too large to allocate" in err.message:      # more values than an int64 counts: no real build can
            raise
        return None                                     # the real build raises the same spec error
    except Exception:  # noqa: BLE001 - e.g. a _target_ module that cannot run on the meta device
        return None


def check_model_memory(network: Network, copies: int = 1) -> None:
    """A ModelSpecError naming the largest layer when `copies` copies of the weights do not fit in memory."""
    from netkiln.memory import shortfall

    from .summary import _bytes, count_params

    short = shortfall(_bytes(network)["total"] * copies)
    if short is None:
        return
    biggest = max(network.rows, key=lambda r: (r.params, r.depth))
    what = "the weights" if copies == 1 else "the weights, gradients and optimizer state"
    raise ModelSpecError(f"this layer has {biggest.params:,} parameters (output {fmt_shape(biggest.output_shape)}) "
                         f"of the model's {count_params(network)['total']:,}; {what} would need {short}. Use fewer "
                         "units or filters, or downsample before this layer.",
                         key=biggest.key or None, layer=biggest.name)


def _check_starts_with_embedding(first: Any, key: str, vocab_size: int) -> None:
    """Token ids are category numbers, not quantities: a text model reads them through an embedding."""
    entry = parse_entry(first, key)
    if entry.kind == "target" or entry.name == "embedding":
        return
    raise ModelSpecError(f"the data are token ids (text, a vocabulary of {vocab_size:,}), which a model reads "
                         "through an embedding: start the layers with `- embedding: {output_dim: 64, mask_zero: true}`"
                         ", or use model=textcnn, model=textrnn or model=auto", key=key, layer=entry.name)


def _check_embedding_has_ids(first: Any, key: str, shape: tuple) -> None:
    """A model that starts with an embedding of unsized ids (textcnn, textrnn) is a text model: on data without a
    vocabulary (a table, images, a signal) say so, rather than asking for the embedding's input_dim."""
    entry = parse_entry(first, f"{key}.layers[0]")
    if entry.kind != "layer" or entry.name != "embedding" or entry.args.get("input_dim") is not None:
        return
    raise ModelSpecError(f"this model starts with an embedding over token ids ({key}.layers[0]), so it needs text "
                         "data: data=text data.path=FILE (a table with a text column, or a folder of .txt files) "
                         f"or data=reviews. The data here are {describe(shape)}, not token ids: choose a model "
                         "for them (model=auto picks one), or, for integer ids of your own, write "
                         f"{key}.layers[0].input_dim (the largest id + 1)", key=key)


def _compile(model_cfg: Any, input_shape: Any, task, key: str, allow_targets: bool,
             only_trusted: bool, vocab_size: int | None = None) -> Network:
    cfg = to_container(model_cfg)
    if not isinstance(cfg, Mapping):
        raise ModelSpecError(f"the model spec must be a mapping with `layers:`, got {cfg!r}", key=key)
    for k in cfg:
        if k not in MODEL_KEYS:
            raise ModelSpecError(f"unknown model key '{k}'." + did_you_mean(str(k), MODEL_KEYS)
                                 + f" Keys: {', '.join(MODEL_KEYS)}", key=f"{key}.{k}")
    layers = cfg.get("layers")
    if layers is None:
        raise ModelSpecError("the model spec needs a `layers:` list", key=f"{key}.layers")
    if not isinstance(layers, list):
        raise ModelSpecError(f"must be a list of layer entries, got {layers!r}", key=f"{key}.layers")
    if not layers:
        raise ModelSpecError("the layer list is empty; add at least one layer "
                             "(a linear model on flat features: `layers: [flatten]` with head: auto)",
                             key=f"{key}.layers")
    head = _head_mode(cfg, key)
    shape = _check_input_shape(input_shape)
    if vocab_size is not None:
        _check_starts_with_embedding(layers[0], f"{key}.layers[0]", vocab_size)
    else:
        _check_embedding_has_ids(layers[0], key, shape)

    builder = _Builder(allow_targets, only_trusted, vocab_size)
    modules, names, rows = [], [], []
    cur, masked = shape, False
    for i, raw in enumerate(layers):
        built = builder.build(raw, cur, f"{key}.layers[{i}]", 0, masked)
        modules.append(built.module)
        names.append(built.name)
        rows += built.rows
        cur, masked = built.shape, built.masked

    if head == "auto":
        if task is None:
            raise ModelSpecError("head: auto needs the task to size the output layer", key=f"{key}.head")
        if len(cur) != 1:
            raise ModelSpecError(
                f"head: auto needs flat features but the last layer outputs {fmt_shape(cur)}; add "
                "`flatten` or a global pooling layer (globalavgpool1d/2d) at the end of the layers",
                key=f"{key}.head")
        built = builder.build({"dense": task.num_outputs}, cur, f"{key}.head", 0)
        modules.append(built.module)
        names.append(built.name)
        rows += built.rows
        cur = built.shape
    elif task is not None and cur != (task.for_output_units(cur).num_outputs,):
        also = " (or 2: one logit per class, softmax)" if task.kind == "binary" else ""
        raise ModelSpecError(
            f"head mismatch: with head: none the last layer must output (None, {task.num_outputs}){also} "
            f"for the {_task_text(task)}, but it outputs {fmt_shape(cur)}; use head: auto or end "
            f"with `dense: {task.num_outputs}` (no activation: the loss takes logits)", key=f"{key}.head")

    return Network(modules, names, rows, shape, cur, name=str(cfg.get("name") or "model"), notes=builder.notes,
                   masked=builder.masked)
