"""netkiln's text models against a TF-IDF + logistic-regression baseline on data=reviews (slow: `pytest -m slow`).

Both sides see exactly the same rows: the baseline's train and test texts are the generator's rows at the dataset's
`split_indices` (checked against the labels of the tensors netkiln trains on), and the netkiln runs compose the same
data config and seed, so their split is the same. The baseline is scikit-learn's TfidfVectorizer (word 1-2-grams,
sublinear tf, min_df 2) + LogisticRegression, its C picked on the validation split, as netkiln's runs pick their
best epoch on it.

The two netkiln runs are the trials of one sweep over model=textcnn,textrnn with the joblib launcher, one per core.
"""
import csv
import json

import numpy as np
import pytest

from netkiln.cli import main

pytestmark = pytest.mark.slow

SETTINGS = ["data=reviews", "seed=0", "batch_size=32", "optimizer.lr=0.002", "trainer.max_epochs=12",
            "trainer.enable_progress_bar=false"]
# Measured on the 2-core development machine with these settings, the split fixed by seed 0, training seeds 0 / 1 / 2
# (test accuracy): textcnn 0.888 / 0.886 / 0.889, textrnn 0.862 (seed 0); the baseline 0.857 (C=1 on the validation
# split). With 5 epochs textcnn had moved from seed to seed (0.886 / 0.847 / 0.893): one seed's figure could fall
# below the baseline, so a check on another machine (whose figure moves about as much as a seed's) was a coin toss.
# At 12 epochs (the best epoch restored, 9-10 here) the seeds agree within 0.003 and sit 0.03 above the baseline,
# about three standard errors of an accuracy on the 900 test rows. The check: the sweep's pick reaches the baseline,
# plain >=; the bidirectional GRU, near the baseline, must stay within RNN_MARGIN below it.
RNN_MARGIN = 0.03


def composed_data():
    from hydra import compose, initialize_config_dir

    from netkiln.commands.hydra_app import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=SETTINGS)


def tfidf_baseline() -> float:
    """Test accuracy of TF-IDF + logistic regression on the texts of netkiln's own train/val/test rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from netkiln.data import load_dataset
    from netkiln.data.reviews import generate_reviews

    cfg = composed_data()
    dataset = load_dataset(cfg.data, seed=cfg.seed)
    texts, labels = generate_reviews(**cfg.data.generator)       # the rows data=reviews reads
    rows = {split: np.asarray(ids) for split, ids in dataset.split_indices.items()}
    for split, y in (("train", dataset.y_train), ("val", dataset.y_val), ("test", dataset.y_test)):
        assert (labels[rows[split]] == y.numpy()).all(), f"the {split} rows are not netkiln's"
    text = {split: [texts[i] for i in ids] for split, ids in rows.items()}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x = {"train": vectorizer.fit_transform(text["train"])}
    x.update({split: vectorizer.transform(text[split]) for split in ("val", "test")})
    fits = [LogisticRegression(C=c, max_iter=1000).fit(x["train"], labels[rows["train"]]) for c in (1.0, 10.0)]
    best = max(fits, key=lambda f: f.score(x["val"], labels[rows["val"]]))
    accuracy = best.score(x["test"], labels[rows["test"]])
    print(f"TF-IDF 1-2-grams + logistic regression (C={best.C}): test accuracy {accuracy:.4f}")
    return accuracy


def test_text_models_reach_the_tfidf_baseline(tmp_path):
    baseline = tfidf_baseline()
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", *SETTINGS, "model=textcnn,textrnn", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]) == 0
    rows = list(csv.DictReader(open(sweep / "leaderboard.csv")))
    assert sorted(r["overrides"] for r in rows) == ["model=textcnn", "model=textrnn"]
    accuracy = {}
    for row in rows:
        metrics = json.loads((sweep / row["trial"] / "metrics.json").read_text())
        accuracy[row["overrides"]] = metrics["test"]["acc"]
        print(f"netkiln {row['overrides']}: test accuracy {metrics['test']['acc']:.4f}, val {metrics['val']['acc']:.4f}"
              f", {metrics['seconds']:.0f} s (baseline {baseline:.4f})")
    best = json.loads((sweep / "best.json").read_text())
    picked = next(r["overrides"] for r in rows if r["trial"] == str(best["trial"]))
    assert accuracy[picked] >= baseline, (picked, accuracy, baseline)
    assert accuracy["model=textrnn"] >= baseline - RNN_MARGIN, (accuracy, baseline)
