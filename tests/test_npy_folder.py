"""data=npz with a folder of .npy files: memory-mapped, read split by split; a truncated file is an error naming
it (issue #17)."""
import json

import numpy as np
import pytest
import torch

from netkiln.cli import main
from netkiln.data import load_dataset, load_dataset_and_source
from netkiln.errors import NetkilnError


def arrays(n=60):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = (rng.normal(0, 1, (n, 8, 2)) + y[:, None, None]).astype(np.float32)
    return x, y


def test_a_folder_of_npy_files_is_memory_mapped_and_loads_as_the_npz(tmp_path):
    x, y = arrays()
    (tmp_path / "arrays").mkdir()
    np.save(tmp_path / "arrays" / "x.npy", x)
    np.save(tmp_path / "arrays" / "y.npy", y)
    np.savez(tmp_path / "same.npz", x=x, y=y)
    ds, raw = load_dataset_and_source({"name": "npz", "path": str(tmp_path / "arrays")})
    assert isinstance(raw.x, np.memmap) or isinstance(raw.x.base, np.memmap)      # not read into memory whole
    assert ds.source_info["format"] == "npy folder" and ds.layout == "sequence"
    same = load_dataset({"name": "npz", "path": str(tmp_path / "same.npz")})
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(ds, f"x_{split}"), getattr(same, f"x_{split}")), split
    assert ds.preprocessing == same.preprocessing


def test_npy_folder_bad_input(tmp_path):
    def err(folder):
        with pytest.raises(NetkilnError) as info:
            load_dataset({"name": "npz", "path": str(folder)})
        return info.value

    x, y = arrays()
    (tmp_path / "empty").mkdir()
    e = err(tmp_path / "empty")
    assert "no .npy files" in str(e) and e.key == "data.path"
    (tmp_path / "objects").mkdir()
    np.save(tmp_path / "objects" / "x.npy", x)
    np.save(tmp_path / "objects" / "y.npy", np.asarray([{"a": 1}] * len(x), dtype=object), allow_pickle=True)
    e = err(tmp_path / "objects")
    assert e.file.endswith("y.npy") and "Python objects" in str(e)
    (tmp_path / "no_y").mkdir()
    np.save(tmp_path / "no_y" / "x.npy", x)
    assert "no array named 'y'" in str(err(tmp_path / "no_y"))
    np.save(tmp_path / "single.npy", x)
    assert "give the folder" in str(err(tmp_path / "single.npy"))


@pytest.mark.parametrize("cut", ["half", "header"])
def test_a_truncated_npy_file_stops_the_run_naming_it(tmp_path, capsys, cut):
    x, y = arrays()
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    data = (folder / "x.npy").read_bytes()
    (folder / "x.npy").write_bytes(data[:len(data) // 2] if cut == "half" else data[:40])
    run = tmp_path / "run"
    rc = main(["train", "data=npz", f"data.path={folder}", "model=mlp", f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "x.npy" in err and "cut short" in err and "Traceback" not in err
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed" and not (run / "model").exists()
