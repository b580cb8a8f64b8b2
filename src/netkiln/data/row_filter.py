"""`data.filter`: a row condition in a small expression language that can call nothing.

pandas' `DataFrame.query` evaluates Python: a filter that walks `__class__.__init__.__globals__` reaches `os.system`,
and a filter comes from config files other people write (a shared `conf/data/*.yaml`, a bundle's `config.yaml`).
So the filter is parsed with `ast` and only these forms are accepted, then evaluated with pandas/numpy operations
on the frame's columns (nothing is looked up by name except columns):

    column names (bare, or in backticks for names with spaces)      age, `unit price`
    literals: numbers, text, True / False / None                     18, 'NL', "NL"
    comparisons, chained too                                         == != < <= > >=, 18 <= age < 65
    `in` / `not in` a list or tuple of literals (== / != a list too) country in ['NL', 'BE']
    arithmetic on numbers                                            + - * / // % ** and unary -
    and / or / not, and pandas' & | ~ for them                       age >= 18 and not (score < 0)

Anything else (calls, attributes, indexing, lambdas, comprehensions, f-strings, double-underscore names, ...) is a
NetkilnError naming the construct. Like query, `&` and `|` are read as `and` / `or` (so `a > 1 & b < 2` needs no
parentheses), and missing values compare as pandas compares them (NaN == x is False, NaN != x is True).
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

import numpy as np

from netkiln.errors import NetkilnError, did_you_mean

MAX_LENGTH = 2000      # characters; a row condition is a line, not a program
MAX_DEPTH = 64         # AST nesting; also keeps the evaluator's recursion shallow
MAX_POWER_BITS = 4096  # a literal power larger than this (10 ** 10 ** 10) would take forever to compute

ALLOWED = ("column names, literals (numbers, text, True/False/None), comparisons, in / not in a list, arithmetic "
           "(+ - * / // % **) and and / or / not")

_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
            ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>", ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|"}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_LITERALS = (int, float, str, bool, type(None))

# What a refused node is called in the error message.
_REFUSED = {
    ast.Call: "a function call", ast.Attribute: "attribute access", ast.Subscript: "indexing",
    ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string", ast.IfExp: "a conditional expression (x if c else y)",
    ast.NamedExpr: "an assignment (:=)", ast.Dict: "a dict", ast.Set: "a set", ast.Starred: "unpacking (*)",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "a slice",
    ast.List: "a list outside `in [...]`", ast.Tuple: "a tuple outside `in (...)`",
}


@dataclass(frozen=True)
class RowFilter:
    """A checked filter: `mask(frame)` keeps the rows where it holds."""
    text: str                       # as the user wrote it
    tree: ast.Expression
    source: str                     # the text as parsed (backtick names replaced by placeholders)
    backticked: dict                # placeholder -> column name
    key: str

    @property
    def columns(self) -> list[str]:
        """The column names the filter reads, in order of appearance."""
        names = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name):
                name = self.backticked.get(node.id, node.id)
                if name not in names:
                    names.append(name)
        return names

    def check_columns(self, columns, file: str | None = None) -> None:
        """Refuse a filter naming a column `columns` lacks, with a did-you-mean."""
        have = {str(c) for c in columns}
        for name in self.columns:
            if name not in have:
                raise _unknown_column(name, have, self.key, file)

    def mask(self, frame, file: str | None = None) -> np.ndarray:
        """A boolean array, True for the rows of `frame` the filter keeps."""
        import pandas as pd

        self.check_columns(frame.columns, file)
        evaluator = _Evaluator(self, frame, file)
        try:
            result = evaluator.eval(self.tree.body)
        except NetkilnError:
            raise
        except (TypeError, ValueError, ArithmeticError) as err:
            raise self.error(f"cannot evaluate it: {_first_line(err)}", file) from None
        if isinstance(result, (bool, np.bool_)):
            return np.full(len(frame), bool(result))
        if isinstance(result, pd.Series) and pd.api.types.is_bool_dtype(result.dtype):
            # A nullable boolean column holds NA where a value was missing: that row is not kept (as in query).
            return result.fillna(False).to_numpy(dtype=bool)
        what = f"values of type {result.dtype}" if isinstance(result, pd.Series) else repr(result)
        raise self.error(f"it gives {what}, not true/false per row; write a condition such as \"age >= 18\"", file)

    def error(self, message: str, file: str | None = None) -> NetkilnError:
        return NetkilnError(f"the filter {_shorten(self.text)!r}: {message}", key=self.key, file=file)


def parse_filter(text, key: str = "data.filter", file: str | None = None) -> RowFilter:
    """Parse and check `text`; a NetkilnError (keyed `key`, naming `file` if given) for anything not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise NetkilnError(f"expected a row condition such as \"age >= 18 and country == 'NL'\", got {text!r}",
                           key=key, file=file)
    if len(text) > MAX_LENGTH:
        raise NetkilnError(f"the filter is {len(text)} characters long; a filter may have {MAX_LENGTH} at most",
                           key=key, file=file)
    source, backticked = _rewrite(text, key, file)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        where = f" (at character {err.offset})" if err.offset else ""
        raise NetkilnError(f"the filter {_shorten(text)!r} is not a valid expression: {err.msg}{where}. Quote text "
                           "values ('NL') and wrap column names with spaces in backticks", key=key, file=file) from None
    except (RecursionError, MemoryError):
        raise NetkilnError(f"the filter {_shorten(text)!r} is nested too deeply", key=key, file=file) from None
    flt = RowFilter(text=text, tree=tree, source=source.strip(), backticked=backticked, key=key)
    _Checker(flt, file).check(tree.body, 1)
    return flt


def _rewrite(text: str, key: str, file: str | None) -> tuple[str, dict]:
    """`col name` -> a placeholder identifier, & -> and, | -> or (as pandas does), string literals untouched."""
    prefix = "nk_backtick_"
    while prefix in text:
        prefix += "_"
    out, names, quote, i = [], {}, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
            out.append(c)
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise NetkilnError(f"the filter {text!r} opens a backtick it does not close", key=key, file=file)
            name = text[i + 1:end]
            placeholder = next((p for p, n in names.items() if n == name), f"{prefix}{len(names)}")
            names[placeholder] = name
            out.append(f" {placeholder} ")
            i = end
        elif c == "&":
            out.append(" and ")
        elif c == "|":
            out.append(" or ")
        else:
            out.append(c)
        i += 1
    return "".join(out), names


def _unknown_column(name: str, columns, key: str, file: str | None) -> NetkilnError:
    return NetkilnError(f"the filter uses {name!r}, which is not a column.{did_you_mean(name, columns)} Quote text "
                        "values ('NL') and wrap column names with spaces in backticks", key=key, file=file)


def _shorten(text: str, most: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[:most - 3] + "..."


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
        return isinstance(node, ast.Constant) and type(node.value) in (int, float)
    return isinstance(node, ast.Constant) and type(node.value) in _LITERALS


class _Checker:
    """Walks the tree once and refuses every node outside the language, naming it."""

    def __init__(self, flt: RowFilter, file: str | None):
        self.flt, self.file = flt, file

    def refuse(self, what: str, node: ast.AST) -> NetkilnError:
        segment = ast.get_source_segment(self.flt.source, node) or ""
        for placeholder, name in self.flt.backticked.items():
            segment = segment.replace(placeholder, f"`{name}`")
        shown = f" ({_shorten(segment, 60)})" if segment.strip() else ""
        return self.flt.error(f"{what} is not allowed{shown}; a filter may use {ALLOWED}", self.file)

    def check(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.flt.error(f"it is nested more than {MAX_DEPTH} levels deep", self.file)
        if isinstance(node, ast.Name):
            if node.id.startswith("__") and node.id not in self.flt.backticked:
                raise self.refuse("a double-underscore name", node)
        elif isinstance(node, ast.Constant):
            if type(node.value) not in _LITERALS:
                raise self.refuse(f"a {type(node.value).__name__} literal", node)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.check(value, depth + 1)
        elif isinstance(node, ast.UnaryOp):
            self.check(node.operand, depth + 1)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                raise self.refuse(f"the operator {_SYMBOLS.get(type(node.op), type(node.op).__name__)}", node)
            self.check(node.left, depth + 1)
            self.check(node.right, depth + 1)
        elif isinstance(node, ast.Compare):
            self.check(node.left, depth + 1)
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.Is, ast.IsNot)):
                    raise self.refuse("'is' (use == or !=)", node)
                if isinstance(right, (ast.List, ast.Tuple)) and isinstance(op, (ast.In, ast.NotIn, ast.Eq,
                                                                                  ast.NotEq)):
                    bad = next((e for e in right.elts if not _is_literal(e)), None)
                    if bad is not None:
                        raise self.refuse("anything but literals in a list", bad)
                elif isinstance(op, (ast.In, ast.NotIn)):
                    raise self.refuse("'in' with anything but a list or tuple of literals", right)
                else:
                    self.check(right, depth + 1)
        else:
            raise self.refuse(_REFUSED.get(type(node), f"the construct {type(node).__name__}"), node)


class _Evaluator:
    """Evaluates a checked tree on a frame: columns are Series, literals Python values, operators pandas'."""

    def __init__(self, flt: RowFilter, frame, file: str | None):
        self.flt, self.file = flt, file
        self.frame = frame
        self.by_name = {str(c): c for c in frame.columns}

    def eval(self, node: ast.AST):
        if isinstance(node, ast.Name):
            return self.frame[self.by_name[self.flt.backticked.get(node.id, node.id)]]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BoolOp):
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = self.eval(node.values[0])
            for value in node.values[1:]:
                result = combine(result, self.eval(value))
            return result
        if isinstance(node, ast.UnaryOp):
            value = self.eval(node.operand)
            if isinstance(node.op, (ast.Not, ast.Invert)):
                # pandas reads `not` as `~`; on a Python bool ~ would give -1 / -2.
                return (not value) if isinstance(value, bool) else operator.invert(value)
            self.numeric(value, node.operand, "-" if isinstance(node.op, ast.USub) else "+")
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left), self.eval(node.right)
            symbol = _SYMBOLS[type(node.op)]
            self.numeric(left, node.left, symbol)
            self.numeric(right, node.right, symbol)
            if isinstance(node.op, ast.Pow) and _too_large_power(left, right):
                raise self.flt.error(f"the power {left} ** {right} is too large to compute", self.file)
            return _ARITHMETIC[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            result, left = None, self.eval(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                part, left = self.compare(op, left, right_node)
                result = part if result is None else operator.and_(result, part)
            return result
        raise AssertionError(f"unchecked node {type(node).__name__}")      # _Checker refuses everything else

    def compare(self, op: ast.cmpop, left, right_node: ast.AST):
        """(left op right, right): a list on the right means membership, as in query."""
        if isinstance(right_node, (ast.List, ast.Tuple)):
            values = [self.eval(e) for e in right_node.elts]
            import pandas as pd
            found = left.isin(values) if isinstance(left, pd.Series) else left in values
            if isinstance(op, (ast.NotIn, ast.NotEq)):
                found = (not found) if isinstance(found, bool) else ~found
            return found, values
        right = self.eval(right_node)
        return _COMPARE[type(op)](left, right), right

    def numeric(self, value, node: ast.AST, symbol: str) -> None:
        """Arithmetic is on numbers only (text * 10 ** 9 would build a huge string)."""
        import pandas as pd

        if isinstance(value, pd.Series):
            if pd.api.types.is_numeric_dtype(value.dtype):
                return
            what = (f"the column {self.flt.backticked.get(node.id, node.id)!r} holds {value.dtype} values"
                    if isinstance(node, ast.Name) else f"it is applied to {value.dtype} values")
        elif isinstance(value, (int, float, np.number, np.bool_)):
            return
        else:
            what = f"it is applied to {value!r}"
        raise self.flt.error(f"arithmetic ({symbol}) needs numbers, but {what}", self.file)


def _too_large_power(base, exponent) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 1 or abs(base) <= 1:
        return False
    return abs(base).bit_length() * exponent > MAX_POWER_BITS
