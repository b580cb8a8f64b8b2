"""`data=text`: labelled texts from a table (CSV, TSV, Parquet: a text column and a target column) or from a folder
with one sub-folder of `.txt` files per class (like Keras's `text_dataset_from_directory`).

Reading, the row filter, the target, the split column and a separate test file work as for `data=csv` (the same
helpers from `tabular`/`tables`). Rows whose text is empty or missing are dropped with a warning. After the split,
`prepare` fits the text kind (`TextPreparation.fit`: the `Tokenizer`) on the training texts only and turns every
text into `max_length` token ids: x is float32 (N, max_length), layout "tokens" (ids are exact in float32; the
model's Embedding takes them as integers).

`RawSource.table` keeps the raw texts for `netkiln analyze` and for showing mistakes with their text:
``{"kind": "text", "texts": [...], "row_ids": [...], "test_texts": [...] | None, "test_row_ids": [...] | None,
"text_column": name | None, "tokenizer": Tokenizer (set by prepare)}``. ``texts[i]`` is the text of source
position i, whose id in `Dataset.split_indices` is ``row_ids[i]`` (`texts_for` maps ids back to texts).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from netkiln.errors import NetkilnError
from netkiln.memory import check_fits, human_bytes
from netkiln.task import Task

from .config import get_choice, get_int
from .sources import RawSource, SourceSpec, register_source
from .tables import TableFile, check_columns, check_file, read_table_source, table_format
from .tabular import filter_rows
from .text_preparation import TextPreparation
from .tokenize import AUTO_MAX_LENGTH, KINDS

log = logging.getLogger(__name__)

TOKENIZER_KEYS = ("tokenizer", "max_tokens", "min_freq", "max_length")
TEXT_KEYS = ("path", "format", "delimiter", "text_encoding", "text", "target", "task", "filter", "split_column",
             "test_path") + TOKENIZER_KEYS
TEXT_SUFFIX = ".txt"
LONG_TEXT_CHARS = 100_000        # a text longer than this is reported (only its first max_length tokens are used)


# ----------------------------------------------------------------------------------------------- settings
def tokenizer_settings(node: dict, path: str) -> dict:
    """The Tokenizer.fit keyword arguments from the data node, checked."""
    kind = get_choice(node, "tokenizer", "word", KINDS, path)
    max_tokens = node.get("max_tokens", 20000)
    if max_tokens is not None:
        max_tokens = get_int(node, "max_tokens", None, path, minimum=1)
    max_length = node.get("max_length", "auto")
    if max_length is None:
        max_length = "auto"
    if max_length != "auto":
        if isinstance(max_length, str):
            raise NetkilnError(f"expected a number of tokens or 'auto', got {max_length!r}", key=f"{path}.max_length")
        max_length = get_int(node, "max_length", None, path, minimum=1)
    return {"kind": kind, "max_tokens": max_tokens, "min_freq": get_int(node, "min_freq", 1, path, minimum=1),
            "max_length": max_length}


def _refuse_standardize(node: dict, path: str) -> None:
    if node.get("standardize"):
        raise NetkilnError("text becomes token ids, which are not standardized; remove "
                           f"{path}.standardize", key=f"{path}.standardize")


# ----------------------------------------------------------------------------------------------- the source
def text_source(texts: list[str], y: np.ndarray, task: Task, target_info: dict, settings: dict, path: str, *,
                info: dict, text_column: str | None = None, test_texts: list[str] | None = None,
                y_test: np.ndarray | None = None, row_ids: np.ndarray | None = None,
                test_row_ids: np.ndarray | None = None, fixed_split: dict | None = None) -> RawSource:
    """A RawSource whose `prepare(train_idx)` fits the text kind on the training texts and encodes them all."""
    table: dict[str, Any] = {
        "kind": "text", "texts": texts, "test_texts": test_texts, "text_column": text_column, "tokenizer": None,
        "row_ids": (np.arange(len(texts)) if row_ids is None else row_ids).tolist(),
        "test_row_ids": None if test_texts is None else
        (np.arange(len(test_texts)) if test_row_ids is None else test_row_ids).tolist(),
    }

    def prepare(train_idx: np.ndarray):
        fitted = TextPreparation.fit([texts[i] for i in train_idx], settings, text_column=text_column,
                                     target_info=target_info, task=task, path=path)
        tok = fitted.tokenizer
        n = len(texts) + (len(test_texts) if test_texts is not None else 0)
        # int64 ids, then their float32 copy.
        check_fits(n * tok.max_length * 12, f"{n:,} texts of {tok.max_length:,} tokens",
                   key=f"{path}.max_length", advice="choose a smaller max_length")
        x = fitted.apply_to_split(texts)
        x_test = fitted.apply_to_split(test_texts) if test_texts is not None else None
        table["tokenizer"] = tok
        log.info("%s: %s tokenizer fitted on %d training texts: %d ids (padding and out-of-vocabulary included), "
                 "max_length %d", path, tok.kind, len(train_idx), tok.vocab_size, tok.max_length)
        return x, x_test, fitted.to_json(), None

    info = {**info, "tokenizer": settings["kind"]}
    return RawSource(x=None, y=y, task=task, layout="tokens", y_test=y_test, info=info, prepare=prepare,
                     fixed_split=fixed_split, row_ids=row_ids, test_row_ids=test_row_ids, table=table,
                     ignores_split_test=True)


def texts_for(table: dict, ids: Sequence[int], test: bool = False) -> list[str]:
    """The texts of `Dataset.split_indices` ids (test=True: ids of the separate test file, when there is one)."""
    own = test and table.get("test_texts") is not None
    texts = table["test_texts"] if own else table["texts"]
    where = {int(r): i for i, r in enumerate(table["test_row_ids"] if own else table["row_ids"])}
    return [texts[where[int(i)]] for i in ids]


# ----------------------------------------------------------------------------------------------- checks
def check_decodable(p: Path, encoding: str, key: str) -> None:
    """Bytes that are not `encoding` text: an error naming the file and the line (not just a byte offset). Read in
    1 MiB chunks: a large file is never held twice."""
    import codecs

    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise NetkilnError(f"unknown text encoding {encoding!r}", key=key.rsplit(".", 1)[0] + ".text_encoding") \
            from None
    lines_before = 0
    with open(p, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                # err.object: the bytes held back from the last chunk (part of one character, never a newline)
                # followed by this chunk.
                line = lines_before + err.object.count(b"\n", 0, err.start) + 1
                raise NetkilnError(f"bytes that are not {encoding} text ({err.reason}: "
                                   f"{err.object[err.start:err.end]!r}). Save the file as UTF-8, or set "
                                   f"{key.rsplit('.', 1)[0]}.text_encoding to its encoding (e.g. latin-1)",
                                   key=key, file=str(p), line=line) from None
            if not chunk:
                return
            lines_before += chunk.count(b"\n")


def _warn_long(lengths: list[int], where: Any, path: str) -> None:
    """A text of megabytes is allowed (only its first max_length tokens are used), but said."""
    long = [i for i, n in enumerate(lengths) if n > LONG_TEXT_CHARS]
    if long:
        worst = max(long, key=lambda i: lengths[i])
        log.warning("%d text(s) longer than %s characters (the longest, %s, at %s); only their first "
                    "%s.max_length tokens are used (max_length=auto never exceeds %d)", len(long),
                    f"{LONG_TEXT_CHARS:,}", human_bytes(lengths[worst]), where(worst), path, AUTO_MAX_LENGTH)


# ----------------------------------------------------------------------------------------------- tables
def _text_column(frame, col: str, tf: TableFile, path: str) -> list[str]:
    """The column as a list of str; numbers are refused (the wrong column was named)."""
    import pandas as pd

    from .tabular import NUMERIC_SHARE, _is_bool_like

    s = frame[col]
    present = s.dropna().astype(str).str.strip()
    present = present[present != ""]
    if len(present) == 0:
        raise NetkilnError(f"every text in the column '{col}' is empty or missing ({len(s)} rows)",
                           key=f"{path}.text", file=str(tf.path), column=col)
    text_like = [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c].dtype)
                 or pd.api.types.is_string_dtype(frame[c].dtype)]
    hint = f" Columns holding text: {', '.join(map(str, text_like[:10]))}." if text_like else ""
    numeric = _is_bool_like(s) or pd.api.types.is_numeric_dtype(s.dtype)
    if not numeric:
        share = float(pd.to_numeric(present, errors="coerce").notna().mean())
        numeric = share >= NUMERIC_SHARE
    if numeric:
        first = s.dropna()
        example = f" (e.g. {first.iloc[0]!r})" if len(first) else ""
        raise NetkilnError(f"the column '{col}' holds numbers{example}, not text; name the column of texts in "
                           f"{path}.text.{hint}", key=f"{path}.text", file=str(tf.path), column=col)
    return [v if isinstance(v, str) else "" if v is None or (isinstance(v, float) and v != v) else str(v)
            for v in s.tolist()]


def _drop_empty(frame, texts: list[str], tf: TableFile, path: str, info: dict, prefix: str = ""):
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    info[f"{prefix}rows_dropped_empty_text"] = len(empty)
    if not empty:
        return frame, texts
    log.warning("%s: dropping %d row(s) with an empty or missing text (the first at %s)", tf.path, len(empty),
                tf.row_text(int(frame.index[empty[0]])))
    keep = np.ones(len(texts), dtype=bool)
    keep[empty] = False
    return frame[keep], [t for t, k in zip(texts, keep) if k]


def _read(value: Any, key: str, path: str, read: dict):
    p = check_file(value, key)
    if table_format(p, read["format"], f"{path}.format") != "parquet" and p.stat().st_size:
        check_decodable(p, read["text_encoding"], key)
    return read_table_source(p, key=key, **read)


def load_text_table(node: dict, path: str, settings: dict) -> RawSource:
    from .tabular import _clean, _encode_target, _encode_test_target, _plan, _split_from_column

    read = dict(format=node.get("format") or "auto", delimiter=node.get("delimiter"), na_values=None,
                text_encoding=node.get("text_encoding") or "utf-8")
    frame, tf = _read(node.get("path"), f"{path}.path", path, read)
    columns = [str(c) for c in frame.columns]
    col = node.get("text")
    if col is None or (isinstance(col, str) and not col.strip()):
        raise NetkilnError(f"name the column that holds the texts, e.g. {path}.text=review. Columns: "
                           f"{', '.join(columns[:30])}.", key=f"{path}.text", file=str(tf.path))
    if not isinstance(col, (str, int)) or isinstance(col, bool):
        raise NetkilnError(f"expected one column name, got {col!r}", key=f"{path}.text")
    col = str(col)
    check_columns([col], columns, f"{path}.text", "text", tf.path)
    target = node.get("target")
    if target is not None and col in ([str(target)] if not isinstance(target, list) else map(str, target)):
        raise NetkilnError(f"the column {col!r} is both the text and the target", key=f"{path}.target")
    # The table source's plan with the text column as the only feature: target, task, filter, split column.
    plan = _plan({k: node.get(k) for k in ("target", "task", "filter", "split_column")} | {"features": [col]},
                 path, columns, tf)
    info: dict[str, Any] = {"source": "file", "file": str(tf.path), "format": tf.format,
                            "rows_in_file": int(len(frame))}
    frame = _clean(frame, plan, tf, path, info)
    frame, texts = _drop_empty(frame, _text_column(frame, col, tf, path), tf, path, info)
    _warn_long([len(t) for t in texts], lambda i: tf.row_text(int(frame.index[i])), path)
    y, task, target_info = _encode_target(frame, plan, tf, path)

    test_texts = y_test = test_ids = None
    if node.get("test_path") is not None:
        if plan.split_column:
            raise NetkilnError("give either a split column or a separate test file, not both",
                               key=f"{path}.test_path")
        test_frame, test_tf = _read(node.get("test_path"), f"{path}.test_path", path, read)
        check_columns(plan.target + [col], test_frame.columns, f"{path}.test_path", "text or target", test_tf.path)
        test_frame = _clean(test_frame, plan, test_tf, path, info, prefix="test_")
        test_frame, test_texts = _drop_empty(test_frame, _text_column(test_frame, col, test_tf, path), test_tf,
                                             path, info, prefix="test_")
        _warn_long([len(t) for t in test_texts], lambda i: test_tf.row_text(int(test_frame.index[i])), path)
        y_test = _encode_test_target(test_frame, plan, task, target_info, test_tf, path)
        test_ids = test_frame.index.to_numpy(dtype=np.int64)
        info["test_file"] = str(test_tf.path)
    fixed = _split_from_column(frame, plan.split_column, tf, path) if plan.split_column else None
    info.update({"rows": int(len(texts) + (len(test_texts) if test_texts is not None else 0)),
                 "description": f"{tf.path.name}: texts in '{col}', target {', '.join(plan.target)}",
                 "text_column": col, "target": plan.target,
                 "split_indices_note": "indices are 0-based data rows of the file (header excluded)"
                                       + ("; test indexes the rows of data.test_path" if test_texts is not None
                                          else "")})
    return text_source(texts, y, task, target_info, settings, path, info=info, text_column=col,
                       test_texts=test_texts, y_test=y_test, row_ids=frame.index.to_numpy(dtype=np.int64),
                       test_row_ids=test_ids, fixed_split=fixed)


# ----------------------------------------------------------------------------------------------- folders
def read_text_file(f: Path, encoding: str, key: str) -> str:
    try:
        data = f.read_bytes()
    except OSError as err:
        raise NetkilnError(f"cannot read the file: {err.strerror or err}", key=key, file=str(f)) from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        check_decodable(f, encoding, key)       # raises, naming the line
        raise


def _read_folder(root: Path, key: str, encoding: str, classes: list[str] | None = None,
                 known: str = "the training folder"):
    """(texts, class indices, classes, files) of a folder of class sub-folders; with `classes` given (those of
    `known`), a sub-folder of another name is an error."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        loose = sum(1 for f in root.iterdir() if f.is_file() and f.suffix.lower() == TEXT_SUFFIX)
        extra = f"; it holds {loose} {TEXT_SUFFIX} file(s) directly" if loose else ""
        raise NetkilnError(f"no class sub-folders in this folder{extra}. Put each class's {TEXT_SUFFIX} files in a "
                           "sub-folder named after the class (e.g. pos/, neg/)", key=key, file=str(root))
    names = [d.name for d in subdirs]
    if classes is None:
        if len(names) < 2:
            raise NetkilnError(f"only one class sub-folder ('{names[0]}'); a classifier needs at least two",
                               key=key, file=str(root))
        classes = names
    else:
        unknown = [c for c in names if c not in classes]
        if unknown:
            raise NetkilnError(f"the {'test ' if known == 'the training folder' else ''}folder has the class "
                               f"'{unknown[0]}', which {known} does not have (classes: {', '.join(classes)})",
                               key=key, file=str(root / unknown[0]))
    texts, ys, files = [], [], []
    for d in subdirs:
        paths = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() == TEXT_SUFFIX
                       and not any(part.startswith(".") for part in f.relative_to(d).parts))
        if not paths:
            raise NetkilnError(f"the class folder '{d.name}' has no {TEXT_SUFFIX} files", key=key, file=str(d))
        c = classes.index(d.name)
        for f in paths:
            texts.append(read_text_file(f, encoding, key))
            ys.append(c)
            files.append(str(f.relative_to(root)))
    return texts, np.asarray(ys, dtype=np.int64), classes, files


def _drop_empty_files(texts, y, files, root: Path, key: str):
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if len(keep) == len(texts):
        return texts, y, files
    if not keep:
        raise NetkilnError(f"every {TEXT_SUFFIX} file is empty", key=key, file=str(root))
    first = next(f for t, f in zip(texts, files) if not t.strip())
    log.warning("%s: skipping %d empty file(s) (e.g. %s)", root, len(texts) - len(keep), first)
    return [texts[i] for i in keep], y[keep], [files[i] for i in keep]


def _refuse_table_keys(node: dict, path: str, keys: Sequence[str]) -> None:
    for k in keys:
        if node.get(k) is not None:
            raise NetkilnError(f"{path}.{k} applies to a table file, but {path}.path is a folder (its sub-folders are "
                               "the classes); remove it", key=f"{path}.{k}")


def load_text_folder(node: dict, path: str, settings: dict, root: Path) -> RawSource:
    _refuse_table_keys(node, path, ("text", "target", "filter", "split_column"))
    if node.get("task") not in (None, "auto", "classification", "binary", "multiclass"):
        raise NetkilnError("a folder of class sub-folders is a classification task", key=f"{path}.task")
    encoding = node.get("text_encoding") or "utf-8"
    key = f"{path}.path"
    texts, y, classes, files = _read_folder(root, key, encoding)
    texts, y, files = _drop_empty_files(texts, y, files, root, key)
    _warn_long([len(t) for t in texts], lambda i: files[i], path)
    info: dict[str, Any] = {"source": "file", "folder": str(root), "format": "text folder", "files": files}
    test_texts = y_test = None
    if node.get("test_path") is not None:
        troot = check_file(node.get("test_path"), f"{path}.test_path", kind="folder")
        test_texts, y_test, _, tfiles = _read_folder(troot, f"{path}.test_path", encoding, classes)
        test_texts, y_test, tfiles = _drop_empty_files(test_texts, y_test, tfiles, troot, f"{path}.test_path")
        info.update({"test_folder": str(troot), "test_files": tfiles})
    kind = "binary" if len(classes) == 2 else "multiclass"
    task = Task(kind, 1 if kind == "binary" else len(classes), tuple(classes))
    info.update({"rows": int(len(texts) + (len(test_texts) if test_texts is not None else 0)),
                 "description": f"{root.name}: {len(classes)} classes of {TEXT_SUFFIX} files",
                 "split_indices_note": "indices into source_info.files (class folders in name order, files in "
                                       "name order)"})
    target_info = {"task": kind, "class_names": classes, "class_values": classes}
    return text_source(texts, y, task, target_info, settings, path, info=info, test_texts=test_texts,
                       y_test=y_test)


# ----------------------------------------------------------------------------------------------- evaluate
def read_labelled(node: dict, path: str, *, text_column: str, target: list[str], classes: list[str] | None):
    """Other labelled texts for `netkiln evaluate`, read as training reads them: a folder of class sub-folders (each
    one of the model's `classes`), or a table whose {path}.text and {path}.target columns (default: the model's
    `text_column` and `target`) hold the texts and the true values; {path}.filter keeps rows as in training; rows
    without a text are dropped.
    → (a DataFrame of the texts and true values under the model's column names, the data's name)."""
    import pandas as pd

    key = f"{path}.path"
    p = check_file(node.get("path"), key, kind="folder" if _is_dir(node.get("path")) else "file or folder")
    encoding = node.get("text_encoding") or "utf-8"
    if p.is_dir():
        _refuse_table_keys(node, path, ("filter",))
        if classes is None:
            raise NetkilnError("the sub-folders of a folder are classes, but this model predicts values; give a table "
                               "with the texts and their true values", key=key, file=str(p))
        texts, y, _, files = _read_folder(p, key, encoding, classes, known="the model")
        texts, y, _ = _drop_empty_files(texts, y, files, p, key)
        return pd.DataFrame({text_column: texts, target[0]: [classes[i] for i in y]}), p.name
    read = dict(format=node.get("format") or "auto", delimiter=node.get("delimiter"), na_values=None,
                text_encoding=encoding)
    frame, tf = _read(p, key, path, read)
    col = str(node.get("text") or text_column)
    given = node.get("target")
    names = target if given is None else [str(t) for t in (given if isinstance(given, list) else [given])]
    if len(names) != len(target):
        raise NetkilnError(f"the model predicts {len(target)} target column(s) ({', '.join(target)}); name as many "
                           f"in {path}.target", key=f"{path}.target")
    check_columns([col], frame.columns, f"{path}.text", "text", tf.path)
    check_columns(names, frame.columns, f"{path}.target", "target", tf.path)
    frame = filter_rows(frame, node.get("filter"), tf, path)
    frame, _ = _drop_empty(frame, _text_column(frame, col, tf, path), tf, path, {})
    return frame[[col, *names]].set_axis([text_column, *target], axis=1), tf.path.name


def load_text(node: dict, path: str) -> RawSource:
    _refuse_standardize(node, path)
    settings = tokenizer_settings(node, path)
    p = check_file(node.get("path"), f"{path}.path", kind="folder" if _is_dir(node.get("path")) else "file or folder")
    if p.is_dir():
        return load_text_folder(node, path, settings, p)
    return load_text_table(node, path, settings)


def _is_dir(v: Any) -> bool:
    return isinstance(v, (str, Path)) and bool(str(v).strip()) and Path(v).expanduser().is_dir()


register_source(SourceSpec("text", load_text, extra_keys=TEXT_KEYS, standardize=False,
                           description="your own texts: a table with a text column, or a folder of .txt files per "
                                       "class (data.path)"))
