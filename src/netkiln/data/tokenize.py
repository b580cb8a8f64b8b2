"""Text → integer token ids, with a vocabulary fitted on the training texts only.

Kinds:
- ``word`` (default): Keras's standardize ``lower_and_strip_punctuation``: lower-case (``str.lower``), delete every
  character of ``STRIP_CHARS`` (ASCII punctuation), split on runs of white space (``str.split()``).
- ``char``: the same standardization, white-space runs joined by one space, then one token per character.
- ``bpe`` / ``wordpiece``: sub-word vocabularies trained with the Hugging Face ``tokenizers`` library (lower-cased,
  split on white space and punctuation first).

Ids: 0 = padding, 1 = out-of-vocabulary, then the vocabulary by frequency in the training texts (ties broken
alphabetically for word/char, so the same texts always give the same vocabulary). ``encode`` right-pads with 0 and
cuts longer texts to ``max_length`` tokens. ``to_json`` spells out everything needed to reproduce ``encode``: for
word/char a plain-Python reimplementation needs only the JSON (lowercase flag, strip characters, split rule,
vocabulary); for bpe/wordpiece it embeds the ``tokenizers`` library's own JSON.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

from netkiln.config_values import is_int
from netkiln.errors import NetkilnError, did_you_mean

log = logging.getLogger(__name__)

KINDS = ("word", "char", "bpe", "wordpiece")
PAD, OOV = "", "[UNK]"                        # Keras's TextVectorization markers for ids 0 and 1
SUBWORD_PAD, SUBWORD_OOV = "[PAD]", "[UNK]"   # the tokenizers library's special tokens (ids 0 and 1)
# Keras's DEFAULT_STRIP_REGEX, as the characters it removes.
STRIP_CHARS = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'"
AUTO_PERCENTILE = 95
AUTO_MAX_LENGTH = 1000                        # max_length=auto never goes above this (one huge text cannot blow up)
MIN_REAL_TOKENS = 3                           # fewer distinct tokens than this cannot separate anything
SUBWORD_DEFAULT_SIZE = 30000                  # the tokenizers library's default vocabulary size
FORMAT = 1

_STRIP_TABLE = str.maketrans("", "", STRIP_CHARS)


def standardize(text: str, lowercase: bool = True, strip_table: dict | None = None) -> str:
    """Lower-case and delete punctuation (word and char tokenizers)."""
    if lowercase:
        text = text.lower()
    return text.translate(_STRIP_TABLE if strip_table is None else strip_table)


class Tokenizer:
    """A fitted tokenizer: `Tokenizer.fit(train_texts, kind=...)`, then `encode(texts)` → int64 (N, max_length)."""

    def __init__(self, kind: str, vocabulary: list[str], max_length: int, *, lowercase: bool = True,
                 strip_chars: str = STRIP_CHARS, subword: Any = None):
        self.kind = kind
        self.vocabulary = list(vocabulary)
        self.max_length = int(max_length)
        self.lowercase = lowercase
        self.strip_chars = strip_chars
        self._strip_table = str.maketrans("", "", strip_chars)
        self._subword = subword                  # a tokenizers.Tokenizer for bpe/wordpiece
        self._index = {t: i for i, t in enumerate(self.vocabulary)}

    # ------------------------------------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, texts: Sequence[str], *, kind: str = "word", max_tokens: int | None = None, min_freq: int = 1,
            max_length: int | str = "auto", key: str = "data") -> "Tokenizer":
        """Fit the vocabulary (and max_length=auto) on `texts`, the training rows only."""
        if kind not in KINDS:
            raise NetkilnError(f"unknown tokenizer {kind!r}.{did_you_mean(str(kind), KINDS)} Choose one of: "
                               f"{', '.join(KINDS)}.", key=f"{key}.tokenizer")
        if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 1):
            raise NetkilnError(f"expected a positive integer (the vocabulary size, padding and out-of-vocabulary "
                               f"included) or null for no limit, got {max_tokens!r}", key=f"{key}.max_tokens")
        if not is_int(min_freq) or min_freq < 1:
            raise NetkilnError(f"expected a positive integer, got {min_freq!r}", key=f"{key}.min_freq")
        if max_length != "auto" and (not is_int(max_length) or max_length < 1):
            raise NetkilnError(f"expected a positive number of tokens or 'auto', got {max_length!r}",
                               key=f"{key}.max_length")
        texts = list(texts)
        if kind in ("word", "char"):
            tok = cls(kind, [PAD, OOV], 1)
            counts: Counter = Counter()
            lengths = []
            for t in texts:
                toks = tok.tokens(t)
                counts.update(toks)
                lengths.append(len(toks))
            distinct = len(counts)
            kept = sorted(((c, w) for w, c in counts.items() if c >= min_freq), key=lambda cw: (-cw[0], cw[1]))
            if max_tokens is not None:
                kept = kept[:max(0, max_tokens - 2)]
            tok.vocabulary = [PAD, OOV] + [w for _, w in kept]
            tok._index = {t: i for i, t in enumerate(tok.vocabulary)}
        else:
            tok = cls(kind, [SUBWORD_PAD, SUBWORD_OOV], 1, subword=_train_subword(kind, texts, max_tokens, min_freq))
            tok.vocabulary = _subword_vocabulary(tok._subword)
            tok._index = {t: i for i, t in enumerate(tok.vocabulary)}
            lengths = [len(e.ids) for e in tok._subword.encode_batch(texts)]
            distinct = len({t for t in tok.vocabulary[2:] if not t.startswith("##")})
        tok._check_size(distinct, max_tokens, min_freq, key)
        tok.max_length = _auto_length(lengths, key) if max_length == "auto" else int(max_length)
        return tok

    def _check_size(self, distinct: int, max_tokens: int | None, min_freq: int, key: str) -> None:
        real = self.vocab_size - 2
        if real >= MIN_REAL_TOKENS:
            return
        if distinct < MIN_REAL_TOKENS:
            raise NetkilnError(f"the training texts hold only {distinct} distinct {self.kind} token(s); a model "
                               f"cannot learn from a vocabulary of {real}. Check the text column ({key}.text) and "
                               f"the tokenizer ({key}.tokenizer)", key=f"{key}.text")
        culprit = ("max_tokens" if max_tokens is not None and max_tokens - 2 < MIN_REAL_TOKENS
                   else "min_freq" if min_freq > 1 else "max_tokens")
        raise NetkilnError(f"the vocabulary keeps only {real} token(s) besides padding and out-of-vocabulary "
                           f"({key}.max_tokens={max_tokens}, {key}.min_freq={min_freq}); at least "
                           f"{MIN_REAL_TOKENS} are needed. Raise {key}.max_tokens or lower {key}.min_freq",
                           key=f"{key}.{culprit}")

    # ------------------------------------------------------------------------------------------- using
    @property
    def vocab_size(self) -> int:
        """The number of ids (padding and out-of-vocabulary included): an Embedding's input_dim."""
        return len(self.vocabulary)

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text (before the vocabulary lookup and before truncation)."""
        text = "" if text is None else str(text)
        if self.kind == "word":
            return standardize(text, self.lowercase, self._strip_table).split()
        if self.kind == "char":
            return list(" ".join(standardize(text, self.lowercase, self._strip_table).split()))
        return self._subword.encode(text).tokens

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        """int64 (N, max_length): token ids, right-padded with 0, cut after max_length tokens."""
        if isinstance(texts, str):
            texts = [texts]
        texts = ["" if t is None else str(t) for t in texts]
        out = np.zeros((len(texts), self.max_length), dtype=np.int64)
        if self.kind in ("word", "char"):
            get = self._index.get
            for i, t in enumerate(texts):
                ids = [get(w, 1) for w in self._head_tokens(t)]
                out[i, :len(ids)] = ids
        else:
            for i, e in enumerate(self._subword.encode_batch(texts)):
                ids = e.ids[:self.max_length]
                out[i, :len(ids)] = ids
        return out

    def _head_tokens(self, text: str) -> list[str]:
        """The first max_length tokens. A text of megabytes is tokenized only as far as needed: a prefix long
        enough for max_length tokens gives the same first tokens as the whole text."""
        n = self.max_length
        budget = 64 * (n + 1)
        while len(text) > budget:
            toks = self.tokens(text[:budget])
            if len(toks) > n:              # the last token may be cut at the prefix's end; the first n are whole
                return toks[:n]
            budget *= 4
        return self.tokens(text)[:n]

    # ------------------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        d: dict[str, Any] = {"format": FORMAT, "kind": self.kind, "max_length": self.max_length,
                             "pad_id": 0, "oov_id": 1}
        if self.kind in ("word", "char"):
            d["standardize"] = {"lowercase": self.lowercase, "strip_chars": self.strip_chars,
                                "rule": "str.lower() if lowercase; delete every character of strip_chars"}
            d["split"] = ("whitespace: str.split(), runs of white space" if self.kind == "word" else
                          "characters: ' '.join(text.split()), then one token per character")
            d["vocabulary"] = list(self.vocabulary)
            d["encode"] = ("ids = [vocabulary.index(t) if t in vocabulary else oov_id for t in tokens][:max_length],"
                           " right-padded with pad_id to max_length")
        else:
            d["tokenizers_json"] = self._subword.to_str()
            d["tokenizers_version"] = _tokenizers_version()
            d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_json(cls, d: Any, key: str = "preprocessing.tokenizer") -> "Tokenizer":
        def bad(what: str) -> NetkilnError:
            return NetkilnError(f"malformed tokenizer: {what}", key=key)

        if not isinstance(d, dict):
            raise bad(f"expected a mapping, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise bad(f"unknown format {d.get('format')!r} (this netkiln reads format {FORMAT})")
        kind = d.get("kind")
        if kind not in KINDS:
            raise bad(f"unknown kind {kind!r}")
        n = d.get("max_length")
        if not is_int(n) or n < 1:
            raise bad(f"max_length must be a positive integer, got {n!r}")
        vocab = d.get("vocabulary")
        if not isinstance(vocab, list) or len(vocab) < 2 or not all(isinstance(t, str) for t in vocab):
            raise bad("vocabulary must be a list of at least 2 strings")
        if len(set(vocab)) != len(vocab):
            raise bad("the vocabulary repeats a token")
        if kind in ("word", "char"):
            s = d.get("standardize")
            if not isinstance(s, dict) or not isinstance(s.get("lowercase"), bool) \
                    or not isinstance(s.get("strip_chars"), str):
                raise bad("standardize must hold lowercase (true/false) and strip_chars (a string)")
            return cls(kind, vocab, n, lowercase=s["lowercase"], strip_chars=s["strip_chars"])
        text = d.get("tokenizers_json")
        if not isinstance(text, str):
            raise bad("tokenizers_json must be the tokenizers library's JSON string")
        from tokenizers import Tokenizer as HFTokenizer

        try:
            sub = HFTokenizer.from_str(text)
        except Exception as err:  # noqa: BLE001 - the library raises plain Exceptions for bad JSON
            raise bad(f"the tokenizers library cannot read it ({str(err).splitlines()[0] if str(err) else err})") \
                from None
        if _subword_vocabulary(sub) != vocab:
            raise bad("the vocabulary does not match the embedded tokenizers JSON")
        return cls(kind, vocab, n, subword=sub)

    def __repr__(self) -> str:
        return f"Tokenizer({self.kind}, vocab_size={self.vocab_size}, max_length={self.max_length})"


# ----------------------------------------------------------------------------------------------- helpers
def _auto_length(lengths: list[int], key: str) -> int:
    """The 95th percentile of the training texts' lengths in tokens (at least 1, at most AUTO_MAX_LENGTH)."""
    if not lengths:
        return 1
    p = int(math.ceil(float(np.percentile(np.asarray(lengths), AUTO_PERCENTILE))))
    n = max(1, p)
    if n > AUTO_MAX_LENGTH:
        log.warning("%s.max_length=auto: the %dth percentile of the training lengths is %d tokens; capped at %d "
                    "(set %s.max_length to choose)", key, AUTO_PERCENTILE, n, AUTO_MAX_LENGTH, key)
        n = AUTO_MAX_LENGTH
    else:
        log.info("%s.max_length=auto: %d tokens, the %dth percentile of the %d training texts' lengths "
                 "(longest %d)", key, n, AUTO_PERCENTILE, len(lengths), max(lengths))
    return n


def _train_subword(kind: str, texts: list[str], max_tokens: int | None, min_freq: int):
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    special = [SUBWORD_PAD, SUBWORD_OOV]       # ids 0 and 1
    size = SUBWORD_DEFAULT_SIZE if max_tokens is None else int(max_tokens)
    trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=min_freq, special_tokens=special,
                                  show_progress=False)
    if kind == "bpe":
        tok = HFTokenizer(models.BPE(unk_token=SUBWORD_OOV))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
    # WordPiece: the library's WordPieceTrainer (BPE with a '##' continuation prefix) numbers the '##' letters in
    # hash-map order, so the same texts can give different vocabularies. Instead, continuation letters are
    # mapped to a private-use code point, a plain (deterministic) BPE is trained on the words, and its tokens,
    # mapped back ('##' for a piece that continues a word), become the WordPiece vocabulary in BPE's order.
    normalizer, pre = normalizers.Lowercase(), pre_tokenizers.BertPreTokenizer()
    bpe = HFTokenizer(models.BPE(unk_token=SUBWORD_OOV))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bpe.train_from_iterator((" ".join(_mark_continuation(w) for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
                             for t in texts), trainer=trainer)
    learned = bpe.get_vocab()
    vocab: dict[str, int] = {}
    for t in sorted(learned, key=learned.get):
        vocab.setdefault(t if t in special else _unmark(t), len(vocab))
    tok = HFTokenizer(models.WordPiece(vocab, unk_token=SUBWORD_OOV, continuing_subword_prefix="##"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    return tok


_CONTINUATION = 0xF0000          # Supplementary Private Use Area-A: continuation letters of the BMP live here


def _mark_continuation(word: str) -> str:
    return word[:1] + "".join(chr(_CONTINUATION + ord(c)) if ord(c) < 0xFFFE else c for c in word[1:])


def _unmark(token: str) -> str:
    """A trained piece back in letters: '##' + letters when it starts inside a word."""
    cont = bool(token) and _CONTINUATION <= ord(token[0]) < _CONTINUATION + 0xFFFE
    letters = "".join(chr(ord(c) - _CONTINUATION) if _CONTINUATION <= ord(c) < _CONTINUATION + 0xFFFE else c
                      for c in token)
    return ("##" if cont else "") + letters


def _subword_vocabulary(sub) -> list[str]:
    vocab = sub.get_vocab(with_added_tokens=True)
    out = [""] * len(vocab)
    for t, i in vocab.items():
        out[i] = t
    return out


def _tokenizers_version() -> str:
    import tokenizers

    return str(tokenizers.__version__)
