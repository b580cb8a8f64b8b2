"""The text kind (data=text, data=reviews): the fitted `Tokenizer` turns raw strings into `max_length` token ids
(0 = padding, 1 = out of vocabulary); the network takes them as float32 ids, an exported graph as int64."""
from __future__ import annotations

from typing import Any

import numpy as np

from netkiln.errors import NetkilnError

from . import json_checks as check
from .preparations import Preparation, check_input_columns, is_frame, register_preparation

FORMAT = 1


@register_preparation
class TextPreparation(Preparation):
    kind = "text"
    trained_on = "text"
    reads_arrays = False
    reads_lines = True                  # a .txt file: one text a line
    labelled_tables = True              # evaluate on another table: its text and target columns
    export_dtype = "int64"

    def __init__(self, steps: dict, **schema: Any):
        super().__init__(steps, **schema)
        self._tokenizer = None

    @classmethod
    def fit(cls, train_texts: list[str], settings: dict, *, text_column: str | None, target_info: dict, task,
            path: str = "data") -> "TextPreparation":
        """The `Tokenizer` fitted on the training texts only; `settings` are its keyword arguments (the data
        config's tokenizer, max_tokens, min_freq, max_length: text.tokenizer_settings)."""
        from .tokenize import Tokenizer

        tok = Tokenizer.fit(train_texts, key=path, **settings)
        fitted = cls({"kind": cls.kind, "format": FORMAT, "layout": "tokens", "text_column": text_column,
                      "tokenizer": tok.to_json(), "vocab_size": tok.vocab_size, "max_length": tok.max_length,
                      "target": target_info, "task": task.to_dict()})
        fitted._tokenizer = tok
        return fitted

    def apply_to_split(self, texts: list[str]) -> np.ndarray:
        """The source's own texts (each already checked to be one): float32 token ids."""
        return self.tokenizer.encode(texts).astype(np.float32)

    @property
    def tokenizer(self):
        """The saved Tokenizer, built on first use (a sub-word one loads the tokenizers library)."""
        if self._tokenizer is None:
            from .tokenize import Tokenizer
            self._tokenizer = Tokenizer.from_json(self.steps.get("tokenizer"), key="run")
        return self._tokenizer

    @property
    def text_column(self) -> str:
        """The column a table input holds its texts in (a folder of .txt files trained with none: 'text')."""
        return str(self.steps.get("text_column") or "text")

    def input_columns(self) -> list[str]:
        return [self.text_column]

    def table_hint(self) -> str:
        return (f"a .txt file with one text a line, or a .csv or .parquet file with the column "
                f"'{self.text_column}'")

    # ------------------------------------------------------------------------------------------------ applying
    def apply(self, data: Any, *, allow_extra: bool = False, unknown_categories: str | None = None,
              unseen: list | None = None, first_row: int = 0) -> np.ndarray:
        """Raw texts → float32 token ids (N, max_length): a list of strings (or one string), a pandas Series, or a
        DataFrame with the text column (target columns ignored; other columns refused unless `allow_extra`)."""
        return self.apply_to_split(self.texts_of(data, allow_extra=allow_extra, first_row=first_row))

    def texts_of(self, data: Any, *, allow_extra: bool = True, first_row: int = 0) -> list[str]:
        """The raw texts of the input, each checked to be a non-empty string."""
        column = None
        if is_frame(data):
            have = [str(c) for c in data.columns]
            check_input_columns(have, [self.text_column], allow_extra=allow_extra,
                                ignore=(self.steps.get("target") or {}).get("columns", []))
            column = self.text_column
            data = data[data.columns[have.index(column)]]
        if isinstance(data, str):
            data = [data]
        if hasattr(data, "tolist") and not isinstance(data, list):      # a pandas Series, a numpy array
            data = data.tolist()
        if not isinstance(data, (list, tuple)):
            raise NetkilnError(f"expected texts (a list of strings, or a table with the column "
                               f"'{self.text_column}'), got {type(data).__name__}")
        for i, text in enumerate(data):
            if not isinstance(text, str) or not text.strip():
                what = ("no text (empty)" if isinstance(text, str) or text is None
                        or (isinstance(text, float) and text != text) else f"{text!r}, not a text")
                raise NetkilnError(f"data row {first_row + i} has {what}; the model takes one text a row",
                                   column=column)
        return list(data)

    # ------------------------------------------------------------------------------------------------ evaluate
    examples_name = "text"

    def examples_of_source(self, raw, split_indices: dict, splits: tuple) -> list | None:
        from .text import texts_for

        if not isinstance(raw.table, dict) or raw.table.get("texts") is None:
            return None
        return [text for split in splits
                for text in texts_for(raw.table, split_indices[split], test=split == "test")]

    def examples_of_table(self, frame) -> list | None:
        return self.texts_of(frame)

    @property
    def target_columns(self) -> list[str]:
        """The saved target column; a model trained on a folder of .txt files has none: 'label'."""
        return super().target_columns or ["label"]

    def read_labelled(self, node: dict, path: str = "data"):
        """A folder of class sub-folders or a table, read by the text source (text.read_labelled)."""
        from .text import read_labelled

        target = self.steps.get("target") or {}
        values = target.get("class_values") or target.get("class_names")
        return read_labelled(node, path, text_column=self.text_column, target=self.target_columns,
                             classes=[str(v) for v in values] if values else None)

    # ------------------------------------------------------------------------------------------------ analyze
    def analysis(self, raw, ds, warnings: list[str]) -> dict | None:
        from .analyze_text import text_report
        return {"text": text_report(raw, ds, warnings)}

    def row_hashes(self, raw, ds) -> dict | None:
        from .analyze_text import text_row_hashes
        return text_row_hashes(raw, ds)

    # ------------------------------------------------------------------------------------------------ saved JSON
    @classmethod
    def check_json(cls, p: dict, layout: str, shape: tuple, config: dict) -> None:
        from .tokenize import Tokenizer

        try:
            tok = Tokenizer.from_json(p.get("tokenizer"))
        except NetkilnError as err:
            raise check.BadEntry("preparation.tokenizer", f"a tokenizer netkiln wrote ({err.message})",
                                 p.get("tokenizer")) from None
        size = check.integer(p.get("vocab_size"), "preparation.vocab_size", 2)
        if size != tok.vocab_size:
            raise check.BadEntry("preparation.vocab_size", f"the tokenizer's {tok.vocab_size} ids", size)
        length = check.integer(p.get("max_length"), "preparation.max_length", 1)
        if length != tok.max_length or list(shape) != [length]:
            raise check.BadEntry("preparation.max_length", f"the tokenizer's and the input's length {list(shape)}",
                                 length)
        if p.get("text_column") is not None and not isinstance(p["text_column"], str):
            raise check.BadEntry("preparation.text_column", "a column name", p["text_column"])
        declared = _embedding_input_dim(config.get("model"))
        if declared is not None and declared < size:
            raise check.BadEntry("preparation.vocab_size", f"at most the model's embedding input_dim {declared}", size)

    # ------------------------------------------------------------------------------------------------ export
    def embeddable_standardize(self) -> dict | None:
        raise NetkilnError("tokenizing cannot be embedded in the exported graph: it takes token ids, which the "
                           "sidecar JSON and the exported vocabulary file spell out; export with "
                           "embed_preparation=false", key="embed_preparation")

    def export_note(self, embedded: bool) -> str:
        return (f"feed token ids, int64 (batch, {self.tokenizer.max_length}): tokenize each text as "
                "preparation.tokenizer spells out (standardize, split, then each token's index in the vocabulary, "
                "1 for a token not in it), cut to max_length and right-pad with 0")

    def vocabulary_json(self) -> dict:
        """{token: id}, as Hugging Face's and Keras's vocab.json files hold it."""
        return {token: i for i, token in enumerate(self.tokenizer.vocabulary)}

    def example_inputs(self, n: int, seed: int = 0, raw: bool = False):
        """Token ids drawn from the whole vocabulary, with padding at the end of some rows."""
        import torch

        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, self.tokenizer.vocab_size, (n, self.tokenizer.max_length), generator=g)
        lengths = torch.randint(1, self.tokenizer.max_length + 1, (n, 1), generator=g)
        return torch.where(torch.arange(self.tokenizer.max_length) < lengths, ids, torch.zeros_like(ids))


def _embedding_input_dim(model: Any) -> int | None:
    """The input_dim a bundle's model spec gives its first layer, an embedding, explicitly (else None)."""
    layers = model.get("layers") if isinstance(model, dict) else None
    first = layers[0] if isinstance(layers, list) and layers else None
    args = first.get("embedding") if isinstance(first, dict) else None
    dim = args.get("input_dim") if isinstance(args, dict) else None
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None
