"""data=text and the Tokenizer: fitted on the training rows only, deterministic, and bad text input refused clearly."""
from __future__ import annotations

import csv
import json
import logging
import random

import numpy as np
import pytest

from netkiln.cli import main
from netkiln.data import load_dataset, load_dataset_and_source
from netkiln.data.text import texts_for
from netkiln.data.tokenize import STRIP_CHARS, Tokenizer
from netkiln.errors import NetkilnError

POS = ["great", "lovely", "excellent", "good", "fun", "superb"]
NEG = ["bad", "awful", "boring", "poor", "terrible", "dull"]
FILL = ["the", "movie", "was", "plot", "and", "really", "it", "film", "acting", "story"]


def _reviews(n: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILL + [rng.choice(POS if label == "pos" else NEG)] * 3)
                 for _ in range(rng.randint(3, 12))]
        rows.append((" ".join(words).capitalize() + "!", label))
    return rows


def _write_csv(path, rows, header=("review", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _node(path, **kw):
    return {"name": "text", "path": str(path), "text": "review", "target": "label", **kw}


# ----------------------------------------------------------------------------------------------- Tokenizer
def test_word_tokenizer_standardizes_like_keras_and_orders_by_frequency():
    tok = Tokenizer.fit(["The movie was GOOD, not bad!", "Bad bad film.", "good good good acting"])
    assert tok.tokens("Hello, World!! it's") == ["hello", "world", "its"]
    # good 4, bad 3, then the words seen once in alphabetical order
    assert tok.vocabulary == ["", "[UNK]", "good", "bad", "acting", "film", "movie", "not", "the", "was"]
    assert tok.vocab_size == 10
    assert tok.max_length == 6          # 95th percentile of lengths 6, 3, 4 → 5.8 → 6
    ids = tok.encode(["good movie zzz", "bad " * 50])
    assert ids.dtype == np.int64 and ids.shape == (2, 6)
    assert ids[0].tolist() == [2, 6, 1, 0, 0, 0]           # right-padded with 0, unknown → 1
    assert ids[1].tolist() == [3] * 6                       # truncated at max_length


def test_max_tokens_counts_padding_and_oov_and_min_freq_drops_rare_tokens():
    texts = ["a a a b b c d e", "a b c f g", "a h i j"]
    assert Tokenizer.fit(texts, max_tokens=5).vocabulary == ["", "[UNK]", "a", "b", "c"]
    assert Tokenizer.fit(texts, min_freq=2).vocabulary == ["", "[UNK]", "a", "b", "c"]
    tok = Tokenizer.fit(texts, max_length=3)
    assert tok.encode("j a zz q").tolist() == [[tok.vocabulary.index("j"), 2, 1]]


def test_word_json_alone_reproduces_encode():
    """A plain-Python reimplementation from the JSON (no netkiln) gives the same ids."""
    texts = [t for t, _ in _reviews(60)] + ["Don't STOP; it's (really) good--fine?"]
    tok = Tokenizer.fit(texts[:40])
    d = json.loads(json.dumps(tok.to_json()))

    def encode(text):
        s = d["standardize"]
        if s["lowercase"]:
            text = text.lower()
        text = "".join(ch for ch in text if ch not in s["strip_chars"])
        index = {t: i for i, t in enumerate(d["vocabulary"])}
        ids = [index.get(t, d["oov_id"]) for t in text.split()][:d["max_length"]]
        return ids + [d["pad_id"]] * (d["max_length"] - len(ids))

    assert d["standardize"]["strip_chars"] == STRIP_CHARS
    assert tok.encode(texts).tolist() == [encode(t) for t in texts]
    assert (Tokenizer.from_json(d).encode(texts) == tok.encode(texts)).all()


def test_char_tokenizer():
    tok = Tokenizer.fit(["Ab  b!", "bb a"], kind="char")
    assert tok.tokens("Ab  b!") == ["a", "b", " ", "b"]
    assert tok.vocabulary[:2] == ["", "[UNK]"] and set(tok.vocabulary[2:]) == {"a", "b", " "}
    assert (Tokenizer.from_json(tok.to_json()).encode(["ab c"]) == tok.encode(["ab c"])).all()


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_subword_tokenizers_round_trip_through_json(kind):
    texts = [t for t, _ in _reviews(80)]
    tok = Tokenizer.fit(texts, kind=kind, max_tokens=80)
    assert tok.vocabulary[:2] == ["[PAD]", "[UNK]"] and tok.vocab_size <= 80
    d = json.loads(json.dumps(tok.to_json()))
    assert isinstance(d["tokenizers_json"], str)
    again = Tokenizer.from_json(d)
    assert (again.encode(texts) == tok.encode(texts)).all()
    assert (Tokenizer.fit(texts, kind=kind, max_tokens=80).encode(texts) == tok.encode(texts)).all()  # deterministic


@pytest.mark.parametrize("bad", [None, [], {"format": 9}, {"format": 1, "kind": "word", "max_length": 0},
                                 {"format": 1, "kind": "word", "max_length": 3, "vocabulary": ["", "[UNK]", "a"]},
                                 {"format": 1, "kind": "word", "max_length": 3, "vocabulary": ["", "", "a"],
                                  "standardize": {"lowercase": True, "strip_chars": ""}},
                                 {"format": 1, "kind": "bpe", "max_length": 3, "vocabulary": ["[PAD]", "[UNK]"],
                                  "tokenizers_json": "{not json"}])
def test_malformed_tokenizer_json_is_a_netkiln_error(bad):
    with pytest.raises(NetkilnError, match="malformed tokenizer"):
        Tokenizer.from_json(bad)


def test_megabyte_text_is_cut_without_blowing_up():
    tok = Tokenizer.fit(["good film", "bad film", "fine plot here"], max_length=4)
    huge = "good " * 1_000_000 + "bad"
    assert tok.encode([huge]).tolist() == [[tok.vocabulary.index("good")] * 4]
    # max_length=auto is capped: one huge training text does not make every row megabytes long
    auto = Tokenizer.fit(["word " * 5000] * 3 + ["a b c"])
    assert auto.max_length == 1000


def test_vocabulary_of_two_tokens_is_an_error_naming_the_key():
    with pytest.raises(NetkilnError, match="max_tokens") as e:
        Tokenizer.fit(["a b c d", "a b e"], max_tokens=4)
    assert e.value.key == "data.max_tokens"
    with pytest.raises(NetkilnError) as e:
        Tokenizer.fit(["a b c d", "a b e"], min_freq=2)
    assert e.value.key == "data.min_freq"
    with pytest.raises(NetkilnError, match="only 2 distinct") as e:
        Tokenizer.fit(["yes no", "no yes yes"])
    assert e.value.key == "data.text"


# ----------------------------------------------------------------------------------------------- data=text
def test_vocabulary_comes_from_the_training_rows_only(tmp_path):
    rows = _reviews(120)
    test_rows = [("Zyzzyva superb film!", "pos"), ("Dull zyzzyva.", "neg")] * 5
    ds, raw = load_dataset_and_source(_node(_write_csv(tmp_path / "r.csv", rows),
                                            test_path=str(_write_csv(tmp_path / "t.csv", test_rows))), 0)
    tok = raw.table["tokenizer"]
    assert "zyzzyva" not in tok.vocabulary
    assert ds.layout == "tokens" and ds.input_shape == (tok.max_length,)
    assert ds.x_test[:, 0].tolist() == [1.0, tok.vocabulary.index("dull")] * 5      # the test-only word is OOV
    # and within one file: a word only in the test split's rows is not in the vocabulary either
    rows2 = rows + [("quokka quokka great", "pos")]
    node = _node(_write_csv(tmp_path / "r2.csv", rows2))
    ds2, raw2 = load_dataset_and_source(node, 0)
    in_train = 120 in ds2.split_indices["train"]
    assert ("quokka" in raw2.table["tokenizer"].vocabulary) == in_train
    seed = next(s for s in range(1, 50) if (120 in load_dataset(node, s).split_indices["train"]) != in_train)
    assert ("quokka" in load_dataset_and_source(node, seed)[1].table["tokenizer"].vocabulary) != in_train


def test_preprocessing_dict_and_same_seed_same_vocabulary(tmp_path):
    node = _node(_write_csv(tmp_path / "r.csv", _reviews(100)), max_tokens=12)
    a, b = load_dataset(node, 3), load_dataset(node, 3)
    p = a.preprocessing
    assert {k: p[k] for k in ("kind", "format", "layout", "text_column")} == \
        {"kind": "text", "format": 1, "layout": "tokens", "text_column": "review"}
    assert p["vocab_size"] == 12 and p["max_length"] == a.input_shape[0]
    assert p["target"]["class_names"] == ["neg", "pos"] and p["task"]["kind"] == "binary"
    assert p["tokenizer"] == b.preprocessing["tokenizer"]
    json.dumps(p)
    assert (a.x_train == b.x_train).all()
    assert a.x_train.dtype.is_floating_point and float(a.x_train.max()) < 12


def test_texts_for_maps_split_ids_back_to_texts(tmp_path):
    rows = _reviews(60)
    ds, raw = load_dataset_and_source(_node(_write_csv(tmp_path / "r.csv", rows)), 0)
    ids = ds.split_indices["test"]
    assert texts_for(raw.table, ids) == [rows[i][0] for i in ids]


def test_filter_and_split_column_work_as_for_tables(tmp_path):
    rows = [(t, lab, "en" if i % 4 else "de", ["train", "train", "val", "test"][i % 4])
            for i, (t, lab) in enumerate(_reviews(80))]
    path = _write_csv(tmp_path / "r.csv", rows, header=("review", "label", "lang", "part"))
    ds = load_dataset(_node(path, filter="lang == 'en'"), 0)
    assert sum(ds.split_sizes.values()) == 60
    ds = load_dataset(_node(path, split_column="part"), 0)
    assert ds.split_sizes == {"train": 40, "val": 20, "test": 20}


def test_folder_source(tmp_path):
    root = tmp_path / "reviews"
    for i, (text, label) in enumerate(_reviews(60)):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    (root / "pos" / "notes.md").write_text("not a text file")
    ds, raw = load_dataset_and_source({"name": "text", "path": str(root)}, 0)
    assert ds.task.kind == "binary" and list(ds.task.class_names) == ["neg", "pos"]
    assert sum(ds.split_sizes.values()) == 60 and raw.table["text_column"] is None
    assert ds.preprocessing["text_column"] is None
    files = ds.source_info["files"]
    assert all(f.endswith(".txt") for f in files)
    i = ds.split_indices["val"][0]
    assert texts_for(raw.table, [i]) == [(root / files[i]).read_text()]


def test_folder_with_one_class_or_an_empty_class_is_an_error(tmp_path):
    (tmp_path / "a" / "pos").mkdir(parents=True)
    (tmp_path / "a" / "pos" / "1.txt").write_text("good")
    with pytest.raises(NetkilnError, match="only one class"):
        load_dataset({"name": "text", "path": str(tmp_path / "a")})
    (tmp_path / "a" / "neg").mkdir()
    with pytest.raises(NetkilnError, match="'neg' has no .txt files"):
        load_dataset({"name": "text", "path": str(tmp_path / "a")})


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_text_column_suggests_the_closest(tmp_path):
    with pytest.raises(NetkilnError, match="(?i)did you mean 'review'") as e:
        load_dataset(_node(_write_csv(tmp_path / "r.csv", _reviews(20)), text="reveiw"))
    assert e.value.key == "data.text"
    with pytest.raises(NetkilnError, match="name the column that holds the texts") as e:
        load_dataset(_node(tmp_path / "r.csv", text=None))


def test_numeric_column_given_as_text_is_an_error(tmp_path):
    rows = [(t, lab, i * 1.5) for i, (t, lab) in enumerate(_reviews(20))]
    with pytest.raises(NetkilnError, match="holds numbers.*Columns holding text: review") as e:
        load_dataset(_node(_write_csv(tmp_path / "r.csv", rows, ("review", "label", "price")), text="price"))
    assert e.value.key == "data.text"


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    p = tmp_path / "r.csv"
    _write_csv(p, _reviews(20))
    lines = p.read_bytes().split(b"\n")
    lines[6] = b"caf\xe9 au lait,pos\r"
    p.write_bytes(b"\n".join(lines))
    with pytest.raises(NetkilnError, match="not utf-8 text.*text_encoding") as e:
        load_dataset(_node(p))
    assert e.value.file == str(p) and e.value.line == 7
    ds, raw = load_dataset_and_source(_node(p, text_encoding="latin-1"), 0)
    assert "café au lait" in raw.table["texts"]


def test_empty_texts_are_dropped_with_a_warning_and_all_empty_is_an_error(tmp_path, caplog):
    rows = _reviews(30) + [("", "pos"), ("   ", "neg")]
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(_node(_write_csv(tmp_path / "r.csv", rows)), 0)
    assert sum(ds.split_sizes.values()) == 30
    assert "dropping 2 row(s) with an empty or missing text (the first at line 32)" in caplog.text
    with pytest.raises(NetkilnError, match="every text in the column 'review' is empty") as e:
        load_dataset(_node(_write_csv(tmp_path / "e.csv", [("", "pos"), ("", "neg")] * 5)))
    assert e.value.key == "data.text"


def test_a_text_of_megabytes_is_warned_about_and_cut(tmp_path, caplog):
    rows = _reviews(40) + [("good " * 300_000, "pos")]
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(_node(_write_csv(tmp_path / "r.csv", rows)), 0)
    assert "1 text(s) longer than 100,000 characters" in caplog.text and "line 42" in caplog.text
    assert ds.input_shape[0] <= 12


def test_bad_tokenizer_settings_name_their_key(tmp_path):
    p = _write_csv(tmp_path / "r.csv", _reviews(30))
    for kw, key in (({"tokenizer": "wrod"}, "data.tokenizer"), ({"max_length": "long"}, "data.max_length"),
                    ({"max_length": 0}, "data.max_length"), ({"min_freq": 0}, "data.min_freq"),
                    ({"max_length": 10 ** 12}, "data.max_length"),            # more memory than there is
                    ({"max_tokens": 3}, "data.max_tokens"), ({"standardize": True}, "data.standardize"),
                    ({"target": "review"}, "data.target"), ({"target": "lable"}, "data.target")):
        with pytest.raises(NetkilnError) as e:
            load_dataset(_node(p, **kw))
        assert e.value.key == key, kw


def test_cli_bad_text_input_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    p = _write_csv(tmp_path / "r.csv", _reviews(20))
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "data=text", f"data.path={p}", "data.text=reveiw", "data.target=label", "trainer=debug",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("netkiln train: error: data.text") and "Did you mean 'review'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()           # a failed run's record only: no model
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


# ----------------------------------------------------------------------------------------------- data=reviews
def test_reviews_are_generated_deterministically_and_cached(tmp_path, monkeypatch):
    from netkiln.data import reviews

    monkeypatch.setenv("NETKILN_CACHE_DIR", str(tmp_path))
    node = {"name": "reviews", "generator": {"num_samples": 300, "seed": 5}}
    ds, raw = load_dataset_and_source(node, 0)
    assert ds.source_info["from_cache"] is False and list(tmp_path.glob("reviews-*.npz"))
    assert list(ds.task.class_names) == ["negative", "neutral", "positive"] and ds.layout == "tokens"
    assert sum(ds.split_sizes.values()) == 300 and ds.split_sizes["test"] == 45
    again, raw2 = load_dataset_and_source(node, 0)
    assert again.source_info["from_cache"] is True
    assert raw2.table["texts"] == raw.table["texts"] and (again.x_train == ds.x_train).all()
    assert raw.table["tokenizer"].vocabulary == raw2.table["tokenizer"].vocabulary
    texts, y = reviews.generate_reviews(300, 0.03, 5)
    assert texts == raw.table["texts"] and (y == raw.y).all()
    assert reviews.generate_reviews(300, 0.03, 6)[0] != texts
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) >= 5 and max(lengths) <= 130
    assert set(np.bincount(y, minlength=3)) and min(np.bincount(y, minlength=3)) > 40


def test_reviews_word_order_carries_the_label():
    """Negation and contrast flip what the bag of words says: the generator's own values agree."""
    import random

    from netkiln.data.reviews import DOMAINS, NEUTRAL, _brands, _Writer

    w = _Writer(random.Random(1), _brands(random.Random(1), 20))
    dom = DOMAINS["electronics"]
    values: dict[str, list[float]] = {"intensified": [], "negated": [], "plain": []}
    negations = (" not ", "n't ", " never ", " hardly ", " far from ", " anything but ", " no longer ", "nobody ")
    for _ in range(600):
        text, v = w.opinion(dom, "phone", 1)
        kind = ("intensified" if " more " in text else "negated" if any(n in f" {text} " for n in negations)
                else "plain")
        values[kind].append(v)
    assert all(len(v) > 10 for v in values.values())
    assert max(values["negated"]) < 0 <= min(values["plain"]) and min(values["intensified"]) > 0
    for _ in range(50):                 # "X but Y": the main clause Y decides
        text, v = w.contrast(dom, "phone", -1, 1)
        assert "but" in text or "although" in text or "however" in text or "even though" in text
        main = text.split(", but ")[-1] if ", but " in text else None
        neutral = any(main is not None and main.endswith(f" {n}") for n in NEUTRAL)
        if main is not None and not neutral and not any(n in f" {main} " for n in negations):
            assert v > 0, text


def test_bad_reviews_generator_settings_name_their_key():
    for gen, key in (({"num_samples": 3}, "data.generator.num_samples"), ({"label_noise": 1.5},
                     "data.generator.label_noise"), ({"sead": 1}, "data.generator.sead")):
        with pytest.raises(NetkilnError) as e:
            load_dataset({"name": "reviews", "generator": gen})
        assert e.value.key == key


@pytest.mark.slow
def test_reviews_bag_of_words_baseline_is_good_but_not_perfect():
    """TF-IDF (1-2 grams) + logistic regression on the default 6,000 reviews: ~85% (README); word order is
    needed for the rest."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    ds, raw = load_dataset_and_source({"name": "reviews"}, 0)
    texts = raw.table["texts"]
    train, test = ds.split_indices["train"], ds.split_indices["test"]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform([texts[i] for i in train])
    model = LogisticRegression(C=10, max_iter=3000).fit(x, ds.y_train.numpy())
    acc = float((model.predict(vec.transform([texts[i] for i in test])) == ds.y_test.numpy()).mean())
    assert 0.78 <= acc <= 0.90, acc


def test_non_utf8_bytes_deep_in_a_large_file_name_the_right_line(tmp_path):
    from netkiln.data.text import check_decodable

    p = tmp_path / "big.txt"
    line = "é" * 100 + "ab\n"           # 203 bytes a line: the first 1 MiB chunk ends inside an é
    p.write_bytes((line * 9000).encode() + b"bad \xff byte\n" + (line * 10).encode())
    with pytest.raises(NetkilnError) as e:
        check_decodable(p, "utf-8", "data.path")
    assert e.value.line == 9001 and e.value.file == str(p)
    p.write_bytes((line * 9000).encode() + "é".encode()[:1])          # cut inside the last character
    with pytest.raises(NetkilnError) as e:
        check_decodable(p, "utf-8", "data.path")
    assert e.value.line == 9001
    p.write_bytes((line * 9000).encode())
    check_decodable(p, "utf-8", "data.path")


def _folder(root, rows):
    for i, (text, label) in enumerate(rows):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


def test_folder_with_a_test_folder_and_bad_files(tmp_path):
    rows = _reviews(60)
    train, test = _folder(tmp_path / "train", rows), _folder(tmp_path / "test", _reviews(12, seed=1))
    ds = load_dataset({"name": "text", "path": str(train), "test_path": str(test)}, 0)
    assert ds.split_sizes["test"] == 12 and ds.split_sizes["train"] + ds.split_sizes["val"] == 60
    (test / "meh").mkdir()
    (test / "meh" / "1.txt").write_text("so so")
    with pytest.raises(NetkilnError, match="the test folder has the class 'meh'") as e:
        load_dataset({"name": "text", "path": str(train), "test_path": str(test)}, 0)
    assert e.value.key == "data.test_path"
    (train / "pos" / "zz.txt").write_bytes(b"fine\nnot \xe9 utf-8\n")
    with pytest.raises(NetkilnError, match="not utf-8 text") as e:
        load_dataset({"name": "text", "path": str(train)}, 0)
    assert e.value.file == str(train / "pos" / "zz.txt") and e.value.line == 2
    with pytest.raises(NetkilnError, match="applies to a table file") as e:
        load_dataset({"name": "text", "path": str(tmp_path / "test"), "text": "review"}, 0)
    assert e.value.key == "data.text"


def test_parquet_and_tsv_tables(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(_reviews(50), columns=["review", "label"])
    frame.to_parquet(tmp_path / "r.parquet", index=False)
    frame.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    a = load_dataset(_node(tmp_path / "r.parquet"), 0)
    b = load_dataset(_node(tmp_path / "r.tsv"), 0)
    assert a.preprocessing["tokenizer"] == b.preprocessing["tokenizer"] and (a.x_train == b.x_train).all()


@pytest.mark.slow
def test_training_saves_the_vocabulary_in_the_bundle_as_json(tmp_path, monkeypatch):
    rows = _reviews(80)
    test_rows = [("zyzzyva superb film", "pos"), ("dull zyzzyva plot", "neg")] * 4
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "data=text", f"data.path={_write_csv(tmp_path / 'r.csv', rows)}", "data.text=review",
               "data.target=label", f"data.test_path={_write_csv(tmp_path / 't.csv', test_rows)}",
               "data.max_length=8", "model=textcnn", "trainer=debug", "trainer.max_epochs=1",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"])
    assert rc == 0
    saved = json.loads((tmp_path / "run" / "model" / "preprocessing.json").read_text())
    steps = saved.get("preparation", saved)
    assert steps["kind"] == "text" and steps["max_length"] == 8 and steps["text_column"] == "review"
    tok = Tokenizer.from_json(steps["tokenizer"])
    assert "zyzzyva" not in tok.vocabulary and "superb" in tok.vocabulary
    assert steps["vocab_size"] == tok.vocab_size
