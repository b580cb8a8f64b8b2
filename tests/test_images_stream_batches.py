"""How a streamed image folder's batches are fetched (data/image_stream.py, training/image_batches.py): decode_into
gives decode_image's pixels and errors for every kind of file, a batch decoded by a worker is the files' pixels in
the batch's order, the validation pass begun while an epoch ends is the pass a fresh start gives, and the prefetch
depth stays within its byte bound."""
import multiprocessing

import numpy as np
import pytest
import torch

from netkiln.data import load_dataset
from netkiln.data.image_stream import (PREFETCH_BATCHES, PREFETCH_BYTES, ImageFileDataset, decode_into,
                                       make_loader, prefetch_batches, raise_failed)
from netkiln.data.images import decode_image
from netkiln.errors import NetkilnError

from test_data_npz_images import make_images


def _children() -> set:
    return set(multiprocessing.active_children())


@pytest.fixture
def odd_files(tmp_path):
    """One image in each mode and format decode_image meets: converted, resized, or neither."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    files = []

    def save(name, img, **kw):
        files.append(str(tmp_path / name))
        img.save(files[-1], **kw)

    save("rgb.png", Image.fromarray(rgb))
    save("rgb_8x8.png", Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))   # no resize for 8x8
    save("gray.png", Image.fromarray(rgb[..., 0]))
    save("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]])))
    save("palette.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=7))
    save("palette_transparent.gif", Image.fromarray(rgb).convert("P"), transparency=3)
    save("photo.jpg", Image.fromarray(rgb), quality=80)
    save("deep.png", Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16)))      # 16-bit grayscale
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    save("picture.bmp", Image.fromarray(rgb))
    return files


@pytest.mark.parametrize("color", ["rgb", "grayscale"])
def test_decode_into_gives_decode_image_pixels_for_every_mode(odd_files, color):
    channels = 1 if color == "grayscale" else 3
    out = np.full((len(odd_files), channels, 8, 8), 7, dtype=np.uint8)
    decode_into(out, odd_files, (8, 8), color, "data.path")
    for i, f in enumerate(odd_files):
        np.testing.assert_array_equal(out[i], decode_image(f, (8, 8), color, "data.path"), err_msg=f)


def test_decode_into_refuses_a_bad_file_with_decode_images_error(odd_files, tmp_path):
    bad = tmp_path / "cut.png"
    bad.write_bytes(open(odd_files[0], "rb").read()[:60])          # a PNG cut short
    with pytest.raises(NetkilnError) as expected:
        decode_image(str(bad), (8, 8), "rgb", "data.path")
    out = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    with pytest.raises(NetkilnError) as got:
        decode_into(out, [odd_files[0], str(bad)], (8, 8), "rgb", "data.path")
    assert got.value.message == expected.value.message and got.value.file == str(bad)
    assert got.value.key == "data.path"


def test_a_worker_decodes_each_batch_in_one_array_in_the_batch_order(tmp_path):
    folder = make_images(tmp_path / "shapes", per_class=10)
    ds = load_dataset({"name": "images", "path": str(folder), "image_size": [8, 8], "streaming": True})
    rows = ds.x_train
    batches = [[5, 0, 3], [1, 2], [4, 6, 7]]
    before = _children()
    loader = make_loader(ImageFileDataset(rows, ds.y_train), batches, workers=2, pin=False)
    got = list(loader)
    for indices, batch in zip(batches, got, strict=True):
        raise_failed(batch)
        expected = np.stack([decode_image(rows.file(i), (8, 8), "rgb") for i in indices])
        assert batch[0].dtype == torch.uint8 and np.array_equal(batch[0].numpy(), expected)
        assert torch.equal(batch[1], ds.y_train[indices])
    del loader, got
    assert _children() <= before


def _eval_pass(evals):
    return [(x.clone(), y.clone()) for x, y in evals]


def test_the_validation_pass_begun_as_the_epoch_ends_is_the_usual_pass(tmp_path):
    from netkiln.training.image_batches import ImageEvalBatches, ImageTrainChunks

    folder = make_images(tmp_path / "shapes", per_class=15)
    ds = load_dataset({"name": "images", "path": str(folder), "image_size": [8, 8], "streaming": True,
                       "split": {"val": 0.3, "test": 0.1}})
    before = _children()
    fresh = ImageEvalBatches(ds.x_val, ds.y_val, 4, workers=1, inputs=ds.pixels)
    expected = _eval_pass(fresh)
    fresh.close()
    assert torch.equal(torch.cat([x for x, _ in expected]), ds.pixels(ds.x_val[:]))    # in order, every row
    evals = ImageEvalBatches(ds.x_val, ds.y_val, 4, workers=1, inputs=ds.pixels)
    chunks = ImageTrainChunks(ds.x_train, ds.y_train, 2, 2, 0, workers=1, inputs=ds.pixels)
    chunks.sampler.then, chunks.next_up = chunks.start_next, evals          # as streamed_image_batches links them
    chunks.sampler.then_before = 3
    assert chunks.num_batches == 9
    for epoch in range(2):
        chunks.epoch = lambda: epoch
        begun = []
        for chunk in chunks:
            for start in range(0, len(chunk), chunks.batch_size):
                chunks.batch(chunk[start:start + chunks.batch_size])
                begun.append(evals.started_early)
        # Not at the epoch's start (4 batches asked ahead), but before its end, before validation asked for it.
        assert begun[0] is False and begun[-1] is True
        got = _eval_pass(evals)
        assert len(got) == len(expected)
        for (x, y), (ex, ey) in zip(got, expected):
            assert torch.equal(x, ex) and torch.equal(y, ey)
    assert _eval_pass(evals)[0][0].shape == expected[0][0].shape      # a pass asked for outside training
    chunks.close()
    evals.close()
    assert _children() <= before


def test_a_bad_validation_image_in_a_pass_begun_early_is_raised_when_validation_reads_it(tmp_path):
    from netkiln.training.image_batches import ImageEvalBatches

    folder = make_images(tmp_path / "shapes", per_class=6)
    ds = load_dataset({"name": "images", "path": str(folder), "image_size": [8, 8], "streaming": True,
                       "split": {"val": 0.5, "test": 0.1}})
    bad = ds.x_val.file(0)
    with open(bad, "wb") as handle:
        handle.write(b"not a picture")
    before = _children()
    evals = ImageEvalBatches(ds.x_val, ds.y_val, 4, workers=1, inputs=ds.pixels)
    evals.prefetch("cpu")
    with pytest.raises(NetkilnError, match="cannot read this image") as err:
        _eval_pass(evals)
    assert err.value.file == bad and evals.loader is None       # the workers were shut down first
    assert _children() <= before


def test_prefetch_depth_is_bounded_by_bytes():
    small = 64 * 3 * 64 * 64
    assert prefetch_batches(small, 1) == PREFETCH_BATCHES
    assert prefetch_batches(PREFETCH_BYTES // 3, 1) == 3
    assert prefetch_batches(PREFETCH_BYTES, 4) == 2                  # never below torch's default
