"""A text model's life after training: evaluate (with mistakes.csv), predict from a .csv or a .txt file,
netkiln.load(...).predict on strings, ONNX export whose sidecar lets plain Python tokenize, and bad input."""
import csv
import json
import random

import numpy as np
import pytest

import netkiln
from netkiln.errors import NetkilnError
from netkiln.cli import main

WORDS = {"pos": "good great excellent lovely superb".split(), "neg": "bad awful poor terrible dull".split(),
         "meh": "okay average plain fair so-so".split()}
FILLER = "the movie was plot acting and it a really".split()


def write_reviews(path, n=150, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        rows.append({"review": " ".join(words).capitalize() + "!", "label": label})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["review", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


TRAIN = ["data=text", "data.text=review", "data.target=label", "model=textcnn", "model.vars.width=8",
         "model.vars.embed_dim=8", "trainer=debug", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
         "batch_size=32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    write_reviews(folder / "reviews.csv")
    assert main(["train", *TRAIN, f"data.path={folder / 'reviews.csv'}", f"hydra.run.dir={folder / 'run'}"]) == 0
    return folder / "run"


TEXTS = ["A great and lovely movie", "terrible, boring plot!", "It was okay; the acting was plain", "zzz unknown"]


def test_evaluate_lists_the_most_confident_mistakes(run, capsys):
    assert main(["evaluate", f"run={run}"]) == 0
    assert "mistakes.csv" in capsys.readouterr().out
    report = json.loads((run / "evaluation" / "evaluation.json").read_text())
    confusion = np.array(report["confusion_matrix"])
    wrong = int(confusion.sum() - np.trace(confusion))
    with open(run / "evaluation" / "mistakes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert wrong > 0 and len(rows) == min(20, wrong) == report["mistakes"]["listed"]
    assert list(rows[0]) == ["text", "true", "predicted", "probability"]
    sure = [float(r["probability"]) for r in rows]
    assert sure == sorted(sure, reverse=True) and all(r["true"] != r["predicted"] for r in rows)
    # each row's probability is the model's own for its predicted label, on that very text
    model = netkiln.load(run)
    texts = [r["text"] for r in rows]
    probs = model.predict_proba(texts)
    assert list(model.predict(texts)) == [r["predicted"] for r in rows]
    picked = [probs[i, model.classes_.index(r["predicted"])] for i, r in enumerate(rows)]
    assert np.allclose(picked, sure, atol=1e-5)


def test_mistakes_of_a_model_trained_on_txt_files_hold_the_texts_without_their_line_ends(tmp_path):
    for i, row in enumerate(write_reviews(tmp_path / "reviews.csv", n=90)):
        (tmp_path / "docs" / row["label"]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / row["label"] / f"{i}.txt").write_text(row["review"] + "\n")     # as editors save
    args = [a for a in TRAIN if not a.startswith(("data.text=", "data.target="))]
    assert main(["train", *args, "trainer.max_epochs=1", f"data.path={tmp_path / 'docs'}",
                 f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    assert main(["evaluate", f"run={tmp_path / 'run'}", "split=all"]) == 0
    with open(tmp_path / "run" / "evaluation" / "mistakes.csv", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    assert texts and all(t == t.strip() and t.endswith("!") for t in texts)


def test_evaluate_on_another_labelled_table(run, tmp_path, capsys):
    write_reviews(tmp_path / "other.csv", n=40, seed=1)
    assert main(["evaluate", f"run={run}", "data=text", f"data.path={tmp_path / 'other.csv'}", "data.text=review",
                 "data.target=label", f"out={tmp_path / 'ev'}"]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["rows"] == 40 and (tmp_path / "ev" / "mistakes.csv").is_file()


def test_predict_from_csv_and_txt_and_python(run, tmp_path):
    (tmp_path / "new.txt").write_text("\n".join(TEXTS) + "\n")
    with open(tmp_path / "new.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["review", "id"], *[[t, i] for i, t in enumerate(TEXTS)]])
    assert main(["predict", f"run={run}", f"input={tmp_path / 'new.txt'}", f"output={tmp_path / 'a.csv'}"]) == 0
    assert main(["predict", f"run={run}", f"input={tmp_path / 'new.csv'}", f"output={tmp_path / 'b.csv'}",
                 "keep_columns=[id]"]) == 0
    import pandas as pd
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    model = netkiln.load(run)
    assert list(a.columns) == ["prediction", *[f"prob_{c}" for c in model.classes_]]
    assert list(a["prediction"]) == list(b["prediction"]) == list(model.predict(TEXTS))
    assert np.allclose(a.filter(like="prob_").to_numpy(), model.predict_proba(TEXTS), atol=1e-6)
    assert list(b["id"]) == [0, 1, 2, 3]
    assert model.predict("A great movie").shape == (1,)           # one string: one prediction
    assert np.allclose(model.predict_proba(pd.Series(TEXTS)), model.predict_proba(TEXTS))


def _tokenize(text: str, tokenizer: dict) -> list[int]:
    """The sidecar's word tokenizer in plain Python: standardize, split, look up, cut, pad."""
    rule = tokenizer["standardize"]
    if rule["lowercase"]:
        text = text.lower()
    text = text.translate(str.maketrans("", "", rule["strip_chars"]))
    index = {token: i for i, token in enumerate(tokenizer["vocabulary"])}
    ids = [index.get(token, tokenizer["oov_id"]) for token in text.split()][:tokenizer["max_length"]]
    return ids + [tokenizer["pad_id"]] * (tokenizer["max_length"] - len(ids))


def test_onnx_export_takes_token_ids_plain_python_can_make(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", f"run={run}", "format=onnx", f"output={out}", "probabilities=true"]) == 0
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert sidecar["input"]["dtype"] == "int64" and sidecar["check"]["ok"]
    vocab = json.loads((tmp_path / sidecar["vocabulary_file"]).read_text())
    tokenizer = sidecar["preparation"]["tokenizer"]
    assert vocab == {t: i for i, t in enumerate(tokenizer["vocabulary"])} and vocab["[UNK]"] == 1
    ids = np.array([_tokenize(t, tokenizer) for t in TEXTS], dtype=np.int64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(["output"], {"input": ids})[0]
    model = netkiln.load(run)
    assert np.allclose(probs, model.predict_proba(TEXTS), atol=1e-5)
    assert [sidecar["output"]["labels"][i] for i in probs.argmax(axis=1)] == list(model.predict(TEXTS))
    assert main(["export", f"run={run}", f"output={tmp_path / 'e.onnx'}", "embed_preparation=true"]) == 2


@pytest.mark.parametrize("name, content, expected", [
    ("typo.csv", "reveiw,label\nA great movie,pos\n", ["lacks the column 'review'", "Did you mean 'reveiw'"]),
    ("numbers.csv", "review\n12\n13\n", ["data row 0 has 12, not a text"]),
    ("missing.csv", 'review\nA fine movie\n""\n', ["data row 1 has no text"]),
    ("empty.txt", "", ["the file is empty"]),
    ("blank.txt", "good\n\nbad\n", ["line 2", "the line is empty"]),
    ("arrays.npy", None, ["trained on text", "one text a line"]),
])
def test_bad_predict_input_is_a_clear_error(run, tmp_path, capsys, name, content, expected):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((2, 6)))
    else:
        path.write_text(content)
    capsys.readouterr()
    assert main(["predict", f"run={run}", f"input={path}", f"output={tmp_path / 'o.csv'}"]) == 2
    err = capsys.readouterr().err
    assert all(e in err for e in expected) and "Traceback" not in err, err
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(NetkilnError, match="data row 1 has 3, not a text"):
        netkiln.load(run).predict(["fine", 3])


def test_a_damaged_tokenizer_is_refused_on_load(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    file = copy / "model" / "preprocessing.json"
    saved = json.loads(file.read_text())
    (tmp_path / "x.txt").write_text("good\n")
    saved["preparation"]["vocab_size"] += 1
    file.write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(["predict", f"run={copy}", f"input={tmp_path / 'x.txt'}", f"output={tmp_path / 'o.csv'}"]) == 2
    err = capsys.readouterr().err
    assert "preparation.vocab_size" in err and "preprocessing.json" in err and "Traceback" not in err
    saved["preparation"]["vocab_size"] -= 1
    saved["preparation"]["tokenizer"]["vocabulary"][2] = saved["preparation"]["tokenizer"]["vocabulary"][3]
    file.write_text(json.dumps(saved))
    assert main(["predict", f"run={copy}", f"input={tmp_path / 'x.txt'}", f"output={tmp_path / 'o.csv'}"]) == 2
    err = capsys.readouterr().err
    assert "preparation.tokenizer" in err and "repeats a token" in err and "Traceback" not in err
