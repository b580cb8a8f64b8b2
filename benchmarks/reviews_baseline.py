"""How hard data=reviews is for a bag of words: scikit-learn TF-IDF + logistic regression on netkiln's own split.

    python benchmarks/reviews_baseline.py                 # the default 6,000 reviews, seed 0
    python benchmarks/reviews_baseline.py --seed 1 --samples 20000

Prints the test accuracy of three baselines, each with C (0.3 ... 30) chosen on the validation split:

- words: TF-IDF over single words;
- words + pairs: TF-IDF over words and word pairs (ngram_range (1, 2)), the baseline the README quotes;
- marked by hand: the same, after a few lines of rules rewrite each word after a negation ("not", "never",
  "isn't"...) as NEG_word, and the words of a "but"/"however"/"although" clause as MAIN_/MINOR_word: the word order
  a bag of words cannot see, given to it by hand. The gap to the plain baseline is what order carries.
"""
from __future__ import annotations

import argparse
import os
import re

NEGATIONS = {"not", "never", "hardly", "nobody", "cannot", "isnt", "wasnt", "doesnt", "dont", "arent", "werent",
             "cant", "wouldnt", "no", "far", "anything"}


def mark(text: str) -> str:
    """NEG_ on the words after a negation (to the end of the clause); MAIN_/MINOR_ on contrasted clauses."""
    out = []
    for sentence in re.split(r"[.!;:]+", text.lower()):
        parts = re.split(r",\s*but\s+|\bhowever,?\s+", sentence)
        for k, part in enumerate(parts):
            prefix = "" if len(parts) == 1 else "MAIN_" if k == len(parts) - 1 else "MINOR_"
            if part.strip().startswith("although") and "," in part:
                minor, main = part.split(",", 1)
                segments = [("MINOR_", minor), ("MAIN_", main)]
            elif "even though" in part:
                main, minor = part.split("even though", 1)
                segments = [("MAIN_", main), ("MINOR_", minor)]
            else:
                segments = [(prefix, part)]
            for pre, segment in segments:
                negated = False
                for word in re.sub(r"[^\w\s]", "", segment).split():
                    out.append(pre + ("NEG_" if negated else "") + word)
                    negated = negated or word in NEGATIONS
    return " ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="the split's seed (netkiln's top-level seed)")
    ap.add_argument("--samples", type=int, default=6000, help="data.generator.num_samples")
    args = ap.parse_args()
    os.environ.setdefault("NETKILN_CACHE_DIR", "/tmp/netkiln-cache")

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from netkiln.data import load_dataset_and_source

    ds, raw = load_dataset_and_source({"name": "reviews", "generator": {"num_samples": args.samples}}, args.seed)
    texts = raw.table["texts"]
    y = {s: getattr(ds, f"y_{s}").numpy() for s in ("train", "val", "test")}
    print(f"data=reviews, {args.samples} rows, split seed {args.seed}: train {len(y['train'])} / val "
          f"{len(y['val'])} / test {len(y['test'])}")
    for name, ngrams, rewrite in (("words", (1, 1), None), ("words + pairs", (1, 2), None),
                                  ("marked by hand", (1, 2), mark)):
        rows = {s: [(rewrite or str)(texts[i]) for i in ds.split_indices[s]] for s in y}
        vec = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True, lowercase=rewrite is None)
        x = {"train": vec.fit_transform(rows["train"])}
        x.update({s: vec.transform(rows[s]) for s in ("val", "test")})
        best = None
        for c in (0.3, 1, 3, 10, 30):
            model = LogisticRegression(C=c, max_iter=3000).fit(x["train"], y["train"])
            val = float((model.predict(x["val"]) == y["val"]).mean())
            if best is None or val > best[0]:
                best = (val, c, float((model.predict(x["test"]) == y["test"]).mean()))
        print(f"{name:>16}: test accuracy {100 * best[2]:.1f}% (C={best[1]}, val {100 * best[0]:.1f}%)")


if __name__ == "__main__":
    main()
