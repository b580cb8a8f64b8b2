"""Epoch time of netkiln's text models vs a hand-written PyTorch loop over the same embedding model, interleaved.

    python benchmarks/bench_text.py                           # textcnn and textrnn on data=reviews
    python benchmarks/bench_text.py --models textcnn --repeats 3 --epochs 4 --threads 1
    python benchmarks/bench_text.py --data "data=text data.path=reviews.csv data.text=review data.target=label"

The method is bench_training.py's (read its docstring): one `netkiln train` run per repeat, and before each of its
epochs one epoch of the hand-written loop, outside netkiln's clock; ratio = median over a repeat's epoch pairs of
netkiln / raw, printed as median [min-max] over repeats. Same data tensors (netkiln's token ids, on the training
device), same batch size, Adam settings and validation pass on both sides.

The hand-written side is what one writes in plain PyTorch for these models, computing the same function as
netkiln's compiled network (its parameter count is checked equal): textcnn = nn.Embedding(padding_idx=0), one
nn.Conv1d(padding="same") + ReLU per width, max over the real steps, dropout, nn.Linear; textrnn =
nn.Embedding(padding_idx=0), a bidirectional nn.GRU over pack_padded_sequence, both final states, dropout,
nn.Linear. Both skip padding as netkiln's mask_zero does, so the ratio is netkiln's cost, not masking's.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

if "OMP_WAIT_POLICY" not in os.environ:     # as `netkiln` sets it (see bench_training.py)
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_training  # noqa: E402  (the interleaved clock, the raw loop, the table helpers)

DATA = ["data=reviews"]
TRAINING = ["batch_size=32", "optimizer=adam", "optimizer.lr=0.002"]    # as tests/test_text_accuracy_slow.py
MODELS = {"textcnn": "Kim CNN: embedding 64, conv1d 3/4/5 x 100 + global max pool, dropout 0.5",
          "textrnn": "embedding 64, bidirectional GRU 64, dropout 0.3"}


# --- the hand-written models ---------------------------------------------------------------------
class HandTextCNN(nn.Module):
    def __init__(self, vocab: int, dim: int, filters: int, dropout: float, outputs: int, widths=(3, 4, 5)):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, k, padding="same") for k in widths)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(filters * len(widths), outputs)

    def forward(self, x):
        ids = x.long()
        padded = (ids == 0)[:, None, :]                 # right-padded: 0s only at the end
        e = self.embedding(ids).transpose(1, 2)         # (B, D, T)
        pooled = [F.relu(conv(e)).masked_fill(padded, float("-inf")).amax(dim=2) for conv in self.convs]
        return self.out(self.dropout(torch.cat(pooled, dim=1)))


class HandTextRNN(nn.Module):
    def __init__(self, vocab: int, dim: int, units: int, dropout: float, outputs: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.gru = nn.GRU(dim, units, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * units, outputs)

    def forward(self, x):
        from torch.nn.utils.rnn import pack_padded_sequence

        ids = x.long()
        lengths = (ids != 0).sum(dim=1).clamp(min=1)
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return self.out(self.dropout(torch.cat([h[-2], h[-1]], dim=1)))


def hand_model(name: str, cfg, vocab: int, outputs: int) -> nn.Module:
    v = cfg.model.vars
    if name == "textcnn":
        return HandTextCNN(vocab, int(v.embed_dim), int(v.width), float(v.dropout), outputs)
    return HandTextRNN(vocab, int(v.embed_dim), int(v.width), float(v.dropout), outputs)


class TextRawLoop(bench_training.RawLoop):
    """bench_training's loop; a binary task's single logit trains with BCE, as netkiln's head: auto does."""

    def __init__(self, network, data, cfg, device):
        super().__init__(network, data, cfg, device)
        if network.out.out_features == 1:
            bce = nn.BCEWithLogitsLoss()
            self.loss_fn = lambda out, y: bce(out.squeeze(-1), y.float())


# --- driver ----------------------------------------------------------------------------------------
def bench_model(name: str, data_overrides: list[str], repeats: int, epochs: int, device: torch.device) -> dict:
    from netkiln.data_and_model import build_data_and_model

    cfg = bench_training.compose([*data_overrides, *TRAINING, f"model={name}"])
    torch.manual_seed(int(cfg.seed))
    dataset, network = build_data_and_model(cfg)
    hand = hand_model(name, cfg, int(dataset.preprocessing["vocab_size"]), network.output_shape[-1])
    mine = sum(p.numel() for p in hand.parameters())
    theirs = sum(p.numel() for p in network.parameters())
    if mine != theirs:
        raise SystemExit(f"{name}: the hand-written model has {mine:,} parameters, netkiln's {theirs:,}")
    data = tuple(t.to(device) for t in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val))
    raw_all, nk_all, ratios, overheads = [], [], [], []
    for r in range(repeats):
        raw, nk, overhead = bench_training.paired_run(cfg, hand, data, epochs, device)
        raw, nk = raw[1:], nk[1:]          # the first epoch of a run warms up
        raw_all += raw
        nk_all += nk
        ratios.append(statistics.median(b / a for a, b in zip(raw, nk)))
        overheads.append(overhead)
        print(f"  {name} repeat {r + 1}/{repeats}: raw {statistics.median(raw) * 1e3:.1f} ms, "
              f"netkiln {statistics.median(nk) * 1e3:.1f} ms, ratio {ratios[-1]:.3f}", file=sys.stderr, flush=True)
    return {"name": name, "rows": len(data[0]), "val_rows": len(data[2]), "steps": tuple(data[0].shape[1:]),
            "params": theirs, "raw": raw_all, "netkiln": nk_all, "ratio": ratios, "overhead": overheads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="textcnn,textrnn", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--data", default=" ".join(DATA), help="the data overrides (default: data=reviews)")
    parser.add_argument("--repeats", type=int, default=3, help="paired repeats per model (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is dropped (default 3)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or the process's CPU time (steadier on a busy machine, CPU only)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.clock == "cpu":
        if device.type == "cuda":
            parser.error("--clock cpu measures host CPU time only; use the wall clock on CUDA")
        bench_training.CLOCK = time.process_time
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is dropped)")
    bench_training.RawLoop = TextRawLoop    # paired_run builds the raw side with this class

    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, clock {args.clock}, "
          f"data: {args.data}")
    results = [bench_model(name, shlex.split(args.data), args.repeats, args.epochs, device) for name in names]
    print(f"\n{'model':8} {'train/val rows':>15} {'params':>9} {'raw ms/epoch':>22} {'netkiln ms/epoch':>22} "
          f"{'netkiln/raw':>22} {'run overhead s':>18}")
    print("  (epoch times: median [min-max] over all timed epochs; ratio: median [min-max] over repeats)")
    for res in results:
        print(f"{res['name']:8} {res['rows']:>8}/{res['val_rows']:<6} {res['params']:>9,} "
              f"{bench_training.mmm(res['raw'], 1e3):>22} {bench_training.mmm(res['netkiln'], 1e3):>22} "
              f"{bench_training.mmm(res['ratio'], fmt='{:.3f}'):>22} "
              f"{bench_training.mmm(res['overhead'], fmt='{:.2f}'):>18}")
    for res in results:
        print(f"  {res['name']}: {MODELS[res['name']]}, token ids {res['steps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
