"""`netkiln analyze` on text (`data=text`, `data=reviews`): what the tokenizer makes of the texts.

- lengths in tokens (before truncation): a histogram, percentiles, how many texts max_length cuts;
- the vocabulary: its size and its coverage (the share of the training texts' tokens that have their own id);
- the out-of-vocabulary rate of each split against the training vocabulary;
- the most frequent and the most distinctive tokens of each class (training rows);
- texts that appear in more than one split (exact text, white space trimmed), with examples.

Called by `analyze.analyze_data` with the source's `RawSource.table` (the raw texts and the fitted tokenizer).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from .analyze import _num
from .text import texts_for

SPLITS = ("train", "val", "test")
TOP_TOKENS = 12
HISTOGRAM_BINS = 30
OOV_WARNING = 0.10          # val/test tokens outside the training vocabulary above this share: a warning
TRUNCATED_WARNING = 0.20    # texts longer than max_length above this share: a warning
EXAMPLES = 3
EXAMPLE_CHARS = 100


def split_texts(raw, ds) -> dict[str, list[str]]:
    """The raw texts of each split, in the order of `ds.split_indices`."""
    own_test = raw.table.get("test_texts") is not None
    return {s: texts_for(raw.table, ds.split_indices[s], test=(s == "test" and own_test)) for s in SPLITS}


def text_row_hashes(raw, ds) -> dict[str, list[int]]:
    """Row hashes for analyze's duplicate search: the text itself (trimmed), not its token ids (which truncation
    and the vocabulary could make equal for different texts)."""
    return {s: [hash(t.strip()) for t in texts] for s, texts in split_texts(raw, ds).items()}


def text_report(raw, ds, warnings: list[str]) -> dict[str, Any]:
    tok = raw.table["tokenizer"]
    texts = split_texts(raw, ds)
    tokens = {s: [tok.tokens(t) for t in texts[s]] for s in SPLITS}
    index = set(tok.vocabulary[2:])

    # lengths
    lengths = np.asarray([len(t) for s in SPLITS for t in tokens[s]], dtype=np.int64)
    counts, edges = np.histogram(lengths, bins=min(HISTOGRAM_BINS, max(1, int(lengths.max()) if len(lengths) else 1)))
    truncated = int((lengths > tok.max_length).sum())
    empty = int((lengths == 0).sum())
    length_report = {
        "unit": "tokens", "max_length": tok.max_length, "truncated": truncated,
        "truncated_share": _num(truncated / max(1, len(lengths))), "empty": empty,
        **{k: _num(v) for k, v in (("min", lengths.min()), ("mean", lengths.mean()), ("median", np.median(lengths)),
                                    ("p95", np.percentile(lengths, 95)), ("max", lengths.max()))},
        "histogram": {"edges": [_num(e) for e in edges], "counts": [int(c) for c in counts]},
    }
    if truncated / max(1, len(lengths)) > TRUNCATED_WARNING:
        warnings.append(f"{truncated} of {len(lengths)} texts are longer than max_length={tok.max_length} tokens and "
                        "are cut; raise data.max_length if their ends matter")
    if empty:
        warnings.append(f"{empty} text(s) have no tokens after standardization (only punctuation?); they become "
                        "all padding")

    # vocabulary and out-of-vocabulary rates
    train_counts = Counter(t for toks in tokens["train"] for t in toks)
    total_train = sum(train_counts.values())
    covered = sum(c for t, c in train_counts.items() if t in index)
    oov = {}
    for s in SPLITS:
        n = sum(len(toks) for toks in tokens[s])
        miss = sum(1 for toks in tokens[s] for t in toks if t not in index)
        oov[s] = {"tokens": n, "out_of_vocabulary": miss, "rate": _num(miss / n) if n else None}
    vocab = {"tokenizer": tok.kind, "size": tok.vocab_size, "distinct_training_tokens": len(train_counts),
             "coverage": _num(covered / total_train) if total_train else None}
    for s in ("val", "test"):
        rate = oov[s]["rate"]
        if rate is not None and rate > OOV_WARNING:
            warnings.append(f"{100 * rate:.1f}% of the {s} tokens are not in the training vocabulary; more "
                            "training text, a larger data.max_tokens, or tokenizer=bpe/wordpiece would help")

    report: dict[str, Any] = {"lengths": length_report, "vocabulary": vocab, "out_of_vocabulary": oov,
                              "top_tokens": _top_tokens(tokens["train"], ds),
                              "shared_texts": _shared(texts)}
    return report


def _top_tokens(train_tokens: list[list[str]], ds) -> list[dict] | None:
    """Per class: the most frequent tokens, and the most distinctive: the z-score of the log-odds ratio of the
    token in the class against the other classes (Monroe et al. 2008, "Fightin' Words"), which ranks a token
    seen often and mostly in one class above a rare name seen three times."""
    task = ds.task
    if not task.is_classification:
        return None
    y = ds.y_train.numpy().reshape(-1)
    per_class = [Counter() for _ in task.class_names]
    for toks, c in zip(train_tokens, y):
        per_class[int(c)].update(toks)
    everywhere = sum(per_class, Counter())
    total = sum(everywhere.values())
    out = []
    for c, name in enumerate(task.class_names):
        mine = per_class[c]
        n_mine = sum(mine.values())
        n_rest = total - n_mine
        scores = []
        for t, k in mine.items():
            rest = everywhere[t] - k
            a, b = k + 0.5, rest + 0.5
            delta = math.log(a / (n_mine - k + 0.5)) - math.log(b / (n_rest - rest + 0.5))
            scores.append((delta / math.sqrt(1 / a + 1 / b), t))
        scores.sort(key=lambda st: (-st[0], st[1]))
        out.append({"class": str(name), "tokens": n_mine,
                    "frequent": [{"token": t, "count": k} for t, k in
                                 sorted(mine.items(), key=lambda tk: (-tk[1], tk[0]))[:TOP_TOKENS]],
                    "distinctive": [{"token": t, "count": mine[t], "z": _num(s)} for s, t in scores[:TOP_TOKENS]]})
    return out


def _shared(texts: dict[str, list[str]]) -> dict[str, Any]:
    """Texts found in two splits (trimmed, exact): counts and a few examples."""
    keys = {s: [t.strip() for t in texts[s]] for s in SPLITS}
    sets = {s: set(keys[s]) for s in SPLITS}
    out: dict[str, Any] = {}
    for a, b in (("val", "train"), ("test", "train"), ("test", "val")):
        both = [t for t in dict.fromkeys(keys[a]) if t in sets[b]]
        out[f"{a}_in_{b}"] = {"count": sum(1 for t in keys[a] if t in sets[b]),
                              "examples": [_short(t) for t in both[:EXAMPLES]]}
    return out


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 1] + "…"


# ----------------------------------------------------------------------------------------------- output
def print_text(section: dict, console) -> None:
    from rich.table import Table

    ln, vocab, oov = section["lengths"], section["vocabulary"], section["out_of_vocabulary"]
    tab = Table(title="text", show_header=False, title_justify="left")
    tab.add_column(style="bold")
    tab.add_column()
    tab.add_row("tokenizer", f"{vocab['tokenizer']}: {vocab['size']} ids (padding and out-of-vocabulary included), "
                             f"{vocab['distinct_training_tokens']} distinct tokens in the training texts")
    if vocab["coverage"] is not None:
        tab.add_row("coverage", f"{100 * vocab['coverage']:.1f}% of the training tokens have their own id")
    tab.add_row("length (tokens)", f"min {ln['min']}, median {ln['median']}, 95th percentile {ln['p95']}, "
                                   f"max {ln['max']}; max_length {ln['max_length']} cuts {ln['truncated']} text(s)")
    tab.add_row("out of vocabulary", ", ".join(f"{s} {100 * oov[s]['rate']:.1f}%" for s in SPLITS
                                               if oov[s]["rate"] is not None))
    for name, shared in section["shared_texts"].items():
        if shared["count"]:
            a, b = name.split("_in_")
            tab.add_row(f"{a} texts in {b}", f"{shared['count']}, e.g. " + " | ".join(shared["examples"]))
    console.print(tab)
    if section["top_tokens"]:
        top = Table(title="tokens per class (training rows)", title_justify="left")
        for h in ("class", "most frequent", "most distinctive"):
            top.add_column(h)
        for c in section["top_tokens"]:
            top.add_row(c["class"], ", ".join(t["token"] for t in c["frequent"][:8]),
                        ", ".join(t["token"] for t in c["distinctive"][:8]))
        console.print(top)


def plot_text(plt, report: dict, ds, plot_target, grid):
    """The target, the length histogram (with max_length) and each class's most distinctive tokens."""
    section = report["text"]
    classes = (section["top_tokens"] or [])[:6]
    fig, axes = grid(plt, 2 + len(classes), cols=4)
    plot_target(axes[0], report, ds)
    ln = section["lengths"]
    edges, counts = ln["histogram"]["edges"], ln["histogram"]["counts"]
    axes[1].bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:green")
    axes[1].axvline(ln["max_length"], color="tab:red", linestyle="--", linewidth=1)
    axes[1].set_title(f"length in tokens (max_length {ln['max_length']})", fontsize=9)
    axes[1].tick_params(labelsize=7)
    for ax, c in zip(axes[2:], classes):
        top = c["distinctive"][:10][::-1]          # bars: the score they are ranked by; (n): the count
        ax.barh(range(len(top)), [t["z"] or 0.0 for t in top], color="tab:orange")
        ax.set_yticks(range(len(top)))
        ax.set_yticklabels([f"{t['token'][:14]} ({t['count']})" for t in top], fontsize=7)
        ax.set_title(f"'{c['class'][:16]}': distinctive tokens", fontsize=9)
        ax.set_xlabel("log-odds z-score vs the other classes", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig
