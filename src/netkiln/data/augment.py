"""`data.augment`: random image transforms on training batches, with Keras's layer names and arguments.

    data:
      augment:
        - random_flip: {mode: horizontal}
        - random_rotation: {factor: 0.1}           # a fraction of a full turn: ±36°
        - random_zoom: {height_factor: 0.2}
        - random_translation: {height_factor: 0.1, width_factor: 0.1}
        - random_contrast: {factor: 0.2}

(a bare name, `- random_flip`, takes the defaults). Written in plain torch so that it runs wherever the batch
is: each step draws one random setting per image from a generator on the batch's device. Unlike Keras's layers,
consecutive geometric steps are one resampling (their affine maps composed), so the picture is interpolated and
filled once. The generator is
reseeded from (seed, epoch, rank) at the start of every epoch, so the same seed gives the same augmented batches
and a run resumed from a checkpoint continues as the uninterrupted run would have. Only training batches are
augmented; validation, evaluation and predictions never are.
"""
from __future__ import annotations

import math
from typing import Any

from netkiln.errors import NetkilnError, did_you_mean

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
_GEOMETRY = {"fill_mode": "reflect", "interpolation": "bilinear", "fill_value": 0.0}

# name → {argument: default}; None marks a required argument.
STEPS: dict[str, dict[str, Any]] = {
    "random_flip": {"mode": "horizontal_and_vertical"},
    "random_rotation": {"factor": None, **_GEOMETRY},
    "random_zoom": {"height_factor": None, "width_factor": None, **_GEOMETRY},
    "random_translation": {"height_factor": None, "width_factor": None, **_GEOMETRY},
    "random_contrast": {"factor": None},
}
# Bare names: a mild default for the factors Keras requires.
BARE_DEFAULTS = {"random_rotation": {"factor": 0.1}, "random_zoom": {"height_factor": 0.1},
                 "random_translation": {"height_factor": 0.1, "width_factor": 0.1},
                 "random_contrast": {"factor": 0.2}}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _range(v: Any, key: str, *, contrast: bool = False) -> list[float]:
    """A factor as Keras reads it: x → [-x, x] (contrast: [1-x, 1+x]); [lo, hi] as given (contrast: [1-lo, 1+hi])."""
    if _number(v):
        lo, hi = (-abs(v), abs(v))
    elif isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(s) for s in v):
        lo, hi = float(v[0]), float(v[1])
        if contrast:
            lo = -lo
        if lo > hi:
            raise NetkilnError(f"expected [lower, upper] with lower <= upper, got {list(v)}", key=key)
    else:
        raise NetkilnError(f"expected a number or [lower, upper], got {v!r}", key=key)
    if contrast:
        lo, hi = 1.0 + lo, 1.0 + hi
        if lo < 0:
            raise NetkilnError(f"the contrast factor can go down by at most 1 (to a flat image), got {v!r}", key=key)
    return [float(lo), float(hi)]


def parse_augment(value: Any, path: str = "data.augment") -> list[dict[str, Any]]:
    """The validated steps as [{"name": ..., argument: value, ...}]; [] for none. Errors name data.augment[i]."""
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise NetkilnError(f"expected a list of augmentations ({', '.join(STEPS)}), got {value!r}", key=path)
    steps = []
    for i, item in enumerate(value):
        key = f"{path}[{i}]"
        if isinstance(item, str):
            name, args = item, None
        elif isinstance(item, dict) and len(item) == 1:
            name, args = next(iter(item.items()))
        else:
            raise NetkilnError(f"expected a name ({', '.join(STEPS)}) or {{name: {{argument: value}}}}, got "
                               f"{item!r}", key=key)
        if name not in STEPS:
            raise NetkilnError(f"unknown augmentation {name!r}.{did_you_mean(str(name), STEPS)} Known: "
                               f"{', '.join(STEPS)}.", key=key)
        key = f"{key}.{name}"
        if args is None:
            args = dict(BARE_DEFAULTS.get(name, {}))
        if not isinstance(args, dict):
            raise NetkilnError(f"expected its arguments as a mapping ({', '.join(STEPS[name])}), got {args!r}",
                               key=key)
        for arg in args:
            if arg not in STEPS[name]:
                raise NetkilnError(f"unknown argument {arg!r}.{did_you_mean(str(arg), STEPS[name])} "
                                   f"{name} takes: {', '.join(STEPS[name])}.", key=f"{key}.{arg}")
        step: dict[str, Any] = {"name": name}
        for arg, default in STEPS[name].items():
            v = args.get(arg, default)
            if v is None and default is None and not (name == "random_zoom" and arg == "width_factor"):
                raise NetkilnError(f"{name} needs {arg!r} (a number, or [lower, upper])", key=f"{key}.{arg}")
            step[arg] = _check_arg(name, arg, v, f"{key}.{arg}")
        steps.append(step)
    return steps


def _check_arg(name: str, arg: str, v: Any, key: str) -> Any:
    choices = {"mode": FLIP_MODES, "fill_mode": FILL_MODES, "interpolation": INTERPOLATIONS}.get(arg)
    if choices is not None:
        if v not in choices:
            raise NetkilnError(f"unknown {arg} {v!r}.{did_you_mean(str(v), choices)} Choose one of: "
                               f"{', '.join(choices)}.", key=key)
        return v
    if arg == "fill_value":
        if not _number(v):
            raise NetkilnError(f"expected a number, got {v!r}", key=key)
        return float(v)
    if v is None:                                   # random_zoom's width_factor: keep the aspect ratio
        return None
    r = _range(v, key, contrast=name == "random_contrast")
    if name == "random_zoom" and r[0] <= -1:
        raise NetkilnError(f"a zoom factor must stay above -1 (zooming in by 100% leaves no image), got {v!r}",
                           key=key)
    return r


class Augmenter:
    """The parsed steps as a callable on a float batch (N, C, H, W). `clip`: the pixel range to keep to
    ([0, 1] for images read from files; None for float arrays of unknown range)."""

    def __init__(self, steps: list[dict[str, Any]], seed: int, clip: tuple[float, float] | None = (0.0, 1.0)):
        self.steps, self.seed, self.clip = steps, int(seed), clip
        self._epoch_seed = self.seed
        self._generator = None

    def __getstate__(self):              # ddp_spawn pickles the training batches: the generator is rebuilt there
        return {**self.__dict__, "_generator": None}

    def new_epoch(self, seed: int, epoch: int, rank: int = 0) -> None:
        self._epoch_seed = (int(seed) * 1_000_003 + int(epoch)) * 1009 + int(rank) + 7
        self._generator = None

    def _gen(self, device):
        import torch

        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self._epoch_seed)
        return self._generator

    def __call__(self, x):
        if not self.steps or len(x) == 0:
            return x
        gen = self._gen(x.device)
        # Consecutive geometric steps with the same fill and interpolation are one resampling of the image (their
        # maps composed): faster, and nothing is filled in or blurred halfway.
        theta, warp_step = None, None
        for step in self.steps:
            name = step["name"]
            if name in _THETA:
                if theta is not None and _sampling(step) != _sampling(warp_step):
                    x, theta = _warp(x, theta, warp_step), None
                step_theta = _THETA[name](x, step, gen)
                theta, warp_step = (step_theta, step) if theta is None else (_compose(theta, step_theta), warp_step)
                continue
            if theta is not None:
                x, theta = _warp(x, theta, warp_step), None
            x = _APPLY[name](x, step, gen)
            if name == "random_contrast" and self.clip is not None:     # as Keras clips to value_range
                x = x.clamp(*self.clip)
        return x if theta is None else _warp(x, theta, warp_step)


def _uniform(n: int, lo_hi: list[float], x, gen):
    import torch

    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, device=x.device, generator=gen, dtype=x.dtype)


def _flip(x, step, gen):
    import torch

    n = len(x)
    for axis, on in ((3, "horizontal"), (2, "vertical")):
        if on in step["mode"]:
            pick = (torch.rand(n, device=x.device, generator=gen) < 0.5).view(n, 1, 1, 1)
            x = torch.where(pick, x.flip(axis), x)
    return x


def _warp(x, theta, step):
    """Resample x through the affine maps theta (N, 2, 3), output coordinates → input coordinates in the
    normalised [-1, 1] units of affine_grid; fill_mode says what the pixels from outside the image are."""
    import torch
    import torch.nn.functional as F

    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    mode, fill = step["fill_mode"], step["fill_value"]
    padding = {"reflect": "reflection", "nearest": "border"}.get(mode, "zeros")
    if mode == "wrap":
        grid = torch.remainder(grid + 1, 2) - 1
    if mode == "constant" and fill:
        return F.grid_sample(x - fill, grid, mode=step["interpolation"], padding_mode="zeros",
                             align_corners=False) + fill
    return F.grid_sample(x, grid, mode=step["interpolation"], padding_mode=padding, align_corners=False)


def _sampling(step) -> tuple:
    return step["fill_mode"], step["interpolation"], step["fill_value"]


def _compose(first, then):
    """One map for `first` then `then` (N, 2, 3 each): the output samples first's input at first(then(p))."""
    import torch

    pad = torch.zeros_like(first[:, :1, :])
    pad[:, 0, 2] = 1
    return torch.bmm(torch.cat([first, pad], 1), torch.cat([then, pad], 1))[:, :2, :]


def _identity_theta(x):
    import torch

    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    return theta


def _rotation(x, step, gen):
    import torch

    n, _, h, w = x.shape
    angle = _uniform(n, step["factor"], x, gen) * (2 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = _identity_theta(x)
    # A rotation in pixel units (square pixels whatever the aspect ratio), written in affine_grid's [-1, 1]
    # units; a positive angle turns the picture counter-clockwise, as in Keras.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    return theta


def _zoom(x, step, gen):
    n = len(x)
    zh = 1 + _uniform(n, step["height_factor"], x, gen)
    zw = zh if step["width_factor"] is None else 1 + _uniform(n, step["width_factor"], x, gen)
    theta = _identity_theta(x)
    theta[:, 0, 0], theta[:, 1, 1] = zw, zh          # a positive factor zooms out, as in Keras
    return theta


def _translation(x, step, gen):
    n = len(x)
    dy = _uniform(n, step["height_factor"], x, gen)
    dx = _uniform(n, step["width_factor"], x, gen)
    theta = _identity_theta(x)
    theta[:, 0, 2], theta[:, 1, 2] = -2 * dx, -2 * dy   # positive: the picture moves right / down
    return theta


def _contrast(x, step, gen):
    # Keras (tf.image.adjust_contrast): (x - mean) * factor + mean, per image and channel.
    factor = _uniform(len(x), step["factor"], x, gen).view(-1, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


_APPLY = {"random_flip": _flip, "random_contrast": _contrast}
# The geometric steps: each gives its per-image affine maps (output → input coordinates), resampled by _warp.
_THETA = {"random_rotation": _rotation, "random_zoom": _zoom, "random_translation": _translation}


def training_inputs(dataset, seed: int):
    """What TrainChunks applies to each gathered training batch (None: the rows go to the network as they are):
    uint8 pixels scaled to float32, augmented (data.augment), then standardised."""
    from dataclasses import replace

    steps = getattr(dataset, "augment", None) or []
    augment = Augmenter(steps, seed, clip=(0.0, 1.0) if dataset.pixels is not None else None) if steps else None
    if dataset.pixels is None:
        return augment
    return replace(dataset.pixels, augment=augment)
