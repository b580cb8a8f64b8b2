"""column_spec: the one set of rules both table fits use (tabular.fit_columns on whole columns,
streaming_stats.StreamingFit on merged chunks), checked against values computed here with pandas."""
import numpy as np
import pandas as pd
import pytest

from netkiln.data.streaming_stats import StreamingFit
from netkiln.data.tabular import TablePlan, fit_columns
from netkiln.errors import NetkilnError

FRAME = pd.DataFrame({
    "a": [1.0, np.nan, 4.0, 4.0, 10.0, np.nan, 2.0],
    "c": ["b", "a", None, "b", "a", "c", None],         # a and b tie for most frequent: a (sorted first) fills
})


def plan(missing="mean", encoding="ordinal", scale="standard", max_categories=50):
    return TablePlan(target=["y"], features=["a", "c"], task="auto", missing=missing, impute={},
                     forced_categorical=set(), forced_numeric=set(), encoding=encoding, encodings={},
                     max_categories=max_categories, scale=scale, filter=None, split_column=None,
                     kinds={"a": "numeric", "c": "categorical"})


def streamed(p, frame=FRAME, rows=2):
    fit = StreamingFit(p)
    for start in range(0, len(frame), rows):
        fit.add(frame.iloc[start:start + rows])
    return fit.specs()


@pytest.mark.parametrize("missing", ["mean", "median", "most_frequent"])
def test_both_fits_impute_and_scale_as_computed_here(missing):
    a = FRAME["a"]
    fill = {"mean": a.mean(), "median": a.median(), "most_frequent": 4.0}[missing]
    filled = a.fillna(fill)
    codes = FRAME["c"].fillna("a").map({"a": 0, "b": 1, "c": 2}).astype(float)    # most_frequent fills c
    for specs in (fit_columns(FRAME, plan(missing)), streamed(plan(missing))):
        num, cat = specs
        assert num["impute"] == {"strategy": missing, "value": pytest.approx(fill)}
        assert num["scale"]["mean"] == pytest.approx(filled.mean()) and num["scale"]["std"] == pytest.approx(
            filled.std(ddof=0))
        assert cat["impute"] == {"strategy": "most_frequent", "value": "a"} and cat["categories"] == ["a", "b", "c"]
        assert cat["scale"]["mean"] == pytest.approx(codes.mean()) and cat["scale"]["std"] == pytest.approx(
            codes.std(ddof=0))
        assert [list(s) for s in specs] == [["name", "kind", "dtype", "impute", "scale", "outputs"],
                                            ["name", "kind", "dtype", "impute", "encoding", "categories", "scale",
                                             "outputs"]]


def test_both_fits_leave_missing_values_out_without_imputation_and_refuse_alike():
    for specs in (fit_columns(FRAME, plan("none", "onehot", "minmax")), streamed(plan("none", "onehot", "minmax"))):
        assert specs[0]["impute"] == {"strategy": "none"} and specs[0]["scale"] == {"method": "minmax", "min": 1.0,
                                                                                     "max": 10.0}
        assert specs[1]["outputs"] == ["c=a", "c=b", "c=c"] and "scale" not in specs[1]
    empty = FRAME.assign(a=np.nan)
    for fit in (lambda p, frame: fit_columns(frame, p), streamed):
        with pytest.raises(NetkilnError, match="3 distinct values") as err:
            fit(plan(encoding="onehot", max_categories=2), FRAME)
        assert err.value.key == "data.max_categories" and err.value.column == "c"
        with pytest.raises(NetkilnError, match="no values in the training rows, so there is nothing to impute") as err:
            fit(plan(), empty)
        assert err.value.key == "data.missing" and err.value.column == "a"
