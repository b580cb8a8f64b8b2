"""Configs and bundles from elsewhere run no code and read no environment.

`data.filter` used to go to `DataFrame.query`, which evaluates Python: the payload below touches a file under query.
Each payload must be refused with exit code 2, its construct named, through the CLI: in a shared `conf/data/*.yaml`
on `summary`, `analyze` and `train`, and in a bundle's `model/config.yaml` on `evaluate`. The marker file is never
created. `${oc.env:...}` is refused in a bundle, and at train time in what the bundle records.
"""
import ast
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from netkiln.cli import main
from netkiln.data.row_filter import MAX_DEPTH, MAX_LENGTH, parse_filter
from netkiln.errors import NetkilnError

SRC = Path(__file__).resolve().parent.parent / "src"
TRAIN = ["model=mlp", "trainer=debug", "trainer.enable_progress_bar=false", "batch_size=32", "trainer.max_epochs=1"]
SECRET = "s3cr3t-value-for-the-test"


def payloads(marker: Path) -> list[tuple[str, str, str]]:
    """(id, filter, the construct the error names)."""
    return [
        ("globals-walk", f"age.__class__.__init__.__globals__['np'].f2py.os.system('touch {marker}') == 0",
         "a function call"),
        ("import", f"__import__('os').system('touch {marker}') == 0", "a function call"),
        ("attribute", "age.__class__ == 1", "attribute access"),
        ("call", "len(age) > 0", "a function call"),
        ("lambda", "age > (lambda: 0)", "a lambda"),
    ]


def _frame(n=80, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(10, 80, n).astype(float)
    country = rng.choice(["NL", "BE", "DE"], n)
    score = rng.normal(0, 1, n).round(3)
    return pd.DataFrame({"age": age, "country": country, "score": score,
                         "label": np.where(score + (age - 45) / 20 > 0, "yes", "no")})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A CSV file, a trained run on it (with an ordinary filter) and the marker's path."""
    root = tmp_path_factory.mktemp("untrusted")
    _frame().to_csv(root / "people.csv", index=False)
    run = root / "run"
    assert main(["train", "data=csv", f"data.path={root / 'people.csv'}", "data.target=label",
                 "data.filter=\"age >= 18 and country in ['NL', 'BE', 'DE']\"", *TRAIN, f"hydra.run.dir={run}"]) == 0
    return {"root": root, "csv": root / "people.csv", "run": run, "marker": root / "pwned"}


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"netkiln {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------------------------- the payload is real
def test_the_globals_payload_runs_code_under_dataframe_query(tmp_path):
    """Why query had to go: on the installed pandas the payload reaches os.system."""
    marker = tmp_path / "ran"
    expr = payloads(marker)[0][1]
    with pytest.raises(Exception):          # the result is no mask, but only after the command ran
        _frame(5).query(expr)
    assert marker.exists()


# ----------------------------------------------------------------------------------------------- shared conf/data
@pytest.mark.parametrize("command", ["summary", "analyze", "train"])
def test_a_filter_in_a_shared_data_config_runs_nothing(world, tmp_path, monkeypatch, capsys, command):
    marker = world["marker"]
    (tmp_path / "conf" / "data").mkdir(parents=True)
    cases = payloads(marker)
    for name, expr, _ in cases:
        (tmp_path / "conf" / "data" / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": "csv", "path": str(world["csv"]), "target": "label", "filter": expr}))
    monkeypatch.chdir(tmp_path)                # netkiln reads ./conf as the user's config folder
    for name, expr, construct in cases:
        capsys.readouterr()
        args = [command, f"data={name}", f"hydra.run.dir={tmp_path / name}"]
        if command == "train":
            args += TRAIN
        assert main(args) == 2, name
        line = _one_error_line(capsys, command)
        assert "data.filter" in line and f"{construct} is not allowed" in line, line
        assert not marker.exists(), f"{name}: the filter ran code"
        assert not (tmp_path / name / "model").exists()


# ----------------------------------------------------------------------------------------------- bundles
def _bundle_copy(world, dest: Path, edit) -> Path:
    run = dest / "run"
    shutil.copytree(world["run"], run, ignore=shutil.ignore_patterns("evaluation"))
    config_file = run / "model" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    edit(config)
    config_file.write_text(yaml.safe_dump(config))
    return run


def test_the_trained_bundle_with_an_ordinary_filter_evaluates(world, tmp_path):
    assert main(["evaluate", f"run={world['run']}", f"out={tmp_path / 'eval'}"]) == 0


def test_a_filter_in_a_bundle_runs_nothing_on_evaluate(world, tmp_path, capsys):
    marker = world["marker"]
    for name, expr, construct in payloads(marker):
        run = _bundle_copy(world, tmp_path / name, lambda c: c["data"].update(filter=expr))
        capsys.readouterr()
        assert main(["evaluate", f"run={run}"]) == 2, name
        line = _one_error_line(capsys, "evaluate")
        assert "data.filter" in line and "config.yaml" in line and f"{construct} is not allowed" in line, line
        assert not marker.exists(), f"{name}: the bundle's filter ran code"
        assert not (run / "evaluation").exists()


@pytest.mark.parametrize("where", ["data.path", "data.filter", "model.name"])
def test_an_interpolation_in_a_bundle_is_refused(world, tmp_path, capsys, monkeypatch, where):
    monkeypatch.setenv("NETKILN_TEST_SECRET", SECRET)
    part, key = where.split(".")
    run = _bundle_copy(world, tmp_path, lambda c: c[part].update({key: "${oc.env:NETKILN_TEST_SECRET}"}))
    capsys.readouterr()
    assert main(["evaluate", f"run={run}"]) == 2
    line = _one_error_line(capsys, "evaluate")
    assert where in line and "config.yaml" in line and "interpolation" in line, line
    assert SECRET not in line


# ----------------------------------------------------------------------------------------------- oc.env at train time
def test_an_environment_value_never_reaches_the_bundle(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETKILN_TEST_SECRET", SECRET)
    monkeypatch.setenv("NETKILN_TEST_CSV", str(world["csv"]))
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "envpath.yaml").write_text(
        "name: csv\npath: ${oc.env:NETKILN_TEST_CSV}\ntarget: label\n")
    (tmp_path / "conf" / "data" / "chained.yaml").write_text(     # reaches the environment through ${key}
        f"name: csv\npath: {world['csv']}\ntarget: label\nna_values: ['${{vars.hidden}}']\n")
    monkeypatch.chdir(tmp_path)
    cases = [("envpath", [], "data.path"),
             ("chained", ["+vars.hidden=${oc.env:NETKILN_TEST_SECRET}"], "data.na_values[0]")]
    for name, extra, key in cases:
        for command in ("train", "analyze"):
            capsys.readouterr()
            args = [command, f"data={name}", *extra, f"hydra.run.dir={tmp_path / command / name}"]
            assert main(args + (TRAIN if command == "train" else [])) == 2, (name, command)
            line = _one_error_line(capsys, command)
            assert key in line and "environment variable" in line, line
            assert SECRET not in line
        assert not (tmp_path / "train" / name / "model").exists()
        assert not (tmp_path / "analyze" / name / "analysis.json").exists()
    # Interpolations that read no environment are fine.
    shutil.copy(world["csv"], tmp_path / "people.csv")
    assert main(["analyze", "data=csv", "data.path=${hydra:runtime.cwd}/people.csv", "data.target=label",
                 f"hydra.run.dir={tmp_path / 'analyze' / 'cwd'}"]) == 0
    assert (tmp_path / "analyze" / "cwd" / "analysis.json").is_file()


# ----------------------------------------------------------------------------------------------- the filter language
@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 120
    frame = pd.DataFrame({"age": rng.integers(0, 90, n).astype(float), "country": rng.choice(["NL", "BE", "DE"], n),
                          "score": rng.normal(0, 1, n), "unit price": rng.uniform(1, 10, n),
                          "member": rng.integers(0, 2, n).astype(bool), "k": rng.integers(0, 5, n)})
    frame.loc[[1, 5, 9, 40], "age"] = np.nan
    frame.loc[[2, 7, 50], "country"] = None
    return frame


@pytest.mark.parametrize("expr", [
    "age >= 18", "age >= 18 and country == 'NL'", "age >= 18 & country == \"NL\"", "age < 30 | score > 1",
    "age < 30 or not member", "18 <= age < 65", "country in ['NL', 'BE']", "country not in ('NL',)",
    "country == ['NL', 'DE']", "country != ['NL']", "k in [1, -2, 3]", "not (age > 40)", "~(age > 40)", "~member",
    "member", "member == True", "age != 30", "country != 'NL'", "age == None", "age != None", "k == 2.0",
    "age * 2 + 1 > 50", "-score > 0.5", "age ** 0.5 > 5", "age // 10 == 3", "age % 2 == 0", "age / 2 > 10",
    "`unit price` > 5", "`unit price` * k >= 10 or country == 'DE'", "score > -1e-1", "country > 'C'",
    "country == 'NL' and (score > 0 or k == 1)", "2 ** 3 < age",
])
def test_the_filter_keeps_the_rows_query_keeps(sample, expr):
    frame = sample
    kept = frame[parse_filter(expr).mask(frame)]
    assert kept.index.equals(frame.query(expr).index)


def test_missing_values_fail_comparisons_but_not_inequality(sample):
    frame = sample
    missing = frame["age"].isna()
    assert not parse_filter("age > -1").mask(frame)[missing.to_numpy()].any()
    assert parse_filter("age != 1000").mask(frame)[missing.to_numpy()].all()
    assert not parse_filter("country in ['NL', 'BE', 'DE']").mask(frame)[frame["country"].isna().to_numpy()].any()


@pytest.mark.parametrize("expr, construct", [
    ("__import__('os').system('true')", "a function call"),
    ("age.__class__", "attribute access"),
    ("age[0] > 1", "indexing"),
    ("age > (lambda: 0)", "a lambda"),
    ("[a for a in age] == 1", "a comprehension"),
    ("f'{age}' == 'x'", "an f-string"),
    ("(age if member else score) > 1", "a conditional expression"),
    ("(x := 3) > age", "an assignment"),
    ("__builtins__ == 1", "a double-underscore name"),
    ("age is None", "'is'"),
    ("age @ 2 > 1", "the operator @"),
    ("age << 1 > 1", "the operator <<"),
    ("age in k", "'in' with anything but a list"),
    ("age in [k]", "anything but literals in a list"),
    ("b'x' == country", "a bytes literal"),
    ("{1: 2} == age", "a dict"),
    ("[1, 2] == age", "a list outside"),
])
def test_each_refused_construct_is_named(expr, construct):
    with pytest.raises(NetkilnError) as err:
        parse_filter(expr, file="conf/data/x.yaml")
    assert err.value.key == "data.filter" and err.value.file == "conf/data/x.yaml"
    assert f"{construct}" in str(err.value) and "is not allowed" in str(err.value), str(err.value)


@pytest.mark.parametrize("expr, expected", [
    ("scor > 0", ["'scor', which is not a column", "Did you mean 'score'?"]),
    ("`unit pric` > 0", ["'unit pric'", "Did you mean 'unit price'?"]),
    ("age >", ["not a valid expression"]),
    ("`age", ["backtick"]),
    ("x" * (MAX_LENGTH + 1), [f"{MAX_LENGTH} at most"]),
    ("-" * (MAX_DEPTH + 5) + "age > 0", [f"more than {MAX_DEPTH} levels"]),
    ("(" * 300 + "age" + ")" * 300 + " > 1", ["not a valid expression"]),
    ("10 ** 10 ** 10 > age", ["too large"]),
    ("country * 1000000000 == 'x'", ["arithmetic (*) needs numbers", "'country'"]),
    ("age + 'x' > 1", ["arithmetic (+) needs numbers"]),
    ("age + 1", ["not true/false per row"]),
    ("country > 1", ["cannot evaluate it"]),
    ("1 / 0 > age", ["cannot evaluate it", "division by zero"]),
])
def test_bad_filters_are_one_line_errors(sample, expr, expected):
    with pytest.raises(NetkilnError) as err:
        parse_filter(expr).mask(sample)
    assert err.value.key == "data.filter"
    for text in expected:
        assert text in str(err.value), str(err.value)


# ----------------------------------------------------------------------------------------------- the override hint
def test_an_unquoted_filter_override_says_how_to_quote_it(world, tmp_path, capsys):
    capsys.readouterr()
    assert main(["train", "data=csv", f"data.path={world['csv']}", "data.target=label", "data.filter=age >= 18",
                 *TRAIN, f"hydra.run.dir={tmp_path}/run"]) == 2
    line = _one_error_line(capsys, "train")
    assert """'data.filter="age >= 18"'""" in line and "Exception" not in line, line


# ----------------------------------------------------------------------------------------------- the source itself
def forbidden_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that evaluate text or unpickle: eval/exec/compile/__import__, .query(, pd.eval, yaml.load & co.,
    pickle.load(s), and allow_pickle=True anywhere."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile", "__import__"):
            found.append((node.lineno, f"{func.id}("))
        elif isinstance(func, ast.Attribute) and func.attr == "query":
            found.append((node.lineno, ".query("))
        elif owner in ("pd", "pandas", "numexpr", "ne") and func.attr == "eval":
            found.append((node.lineno, f"{owner}.eval("))
        elif owner == "yaml" and func.attr in ("load", "load_all", "full_load", "full_load_all", "unsafe_load",
                                               "unsafe_load_all"):
            found.append((node.lineno, f"yaml.{func.attr}("))
        elif owner in ("pickle", "dill", "cloudpickle") and func.attr in ("load", "loads"):
            found.append((node.lineno, f"{owner}.{func.attr}("))
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append((node.lineno, "allow_pickle="))
    return found


def test_the_scanner_finds_each_forbidden_call():
    snippet = ("eval('1')\nexec('x')\ndf.query('a > 1')\npd.eval('1')\nyaml.load(s)\nyaml.unsafe_load(s)\n"
               "pickle.loads(b)\nnp.load(p, allow_pickle=True)\n__import__('os')\n")
    assert len(forbidden_calls(ast.parse(snippet))) == 9
    assert forbidden_calls(ast.parse("yaml.safe_load(s)\nnet.eval()\nnp.load(p, allow_pickle=False)\n")) == []


def test_the_source_evaluates_no_text_and_unpickles_nothing():
    files = list(SRC.rglob("*.py"))
    assert len(files) > 20
    found = [f"{path.relative_to(SRC)}:{line}: {what}" for path in files
             for line, what in forbidden_calls(ast.parse(path.read_text(), str(path)))]
    assert not found, found
