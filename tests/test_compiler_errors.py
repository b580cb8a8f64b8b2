"""Spec mistakes are found at compile time and name the config path, the layer and the shapes."""
import pytest

from netkiln.compiler import compile_model
from netkiln.errors import NetkilnError
from netkiln.task import Task

TEN = Task("multiclass", 10)
SEQ = (40, 1)


def error(layers, shape=SEQ, **kw):
    spec = {"layers": layers, **kw.pop("extra", {})}
    with pytest.raises(NetkilnError) as info:
        compile_model(spec, shape, kw.pop("task", TEN), **kw)
    return info.value, str(info.value)


CASES = [
    # (layers, input shape, key, fragments of the message)
    (["flatten", "convd1"], SEQ, "model.layers[1]", ["unknown layer 'convd1'", "Did you mean 'conv1d'?"]),
    ([{"conv1d": {"filters": 4, "kernal_size": 3}}], SEQ, "model.layers[0].kernal_size",
     ["unknown argument 'kernal_size'", "Did you mean 'kernel_size'?"]),
    (["flatten", {"dense": {"units": "abc"}}], SEQ, "model.layers[1].units", ["positive integer", "'abc'"]),
    ([{"dense": 0}], SEQ, "model.layers[0].units", ["positive integer"]),
    ([{"dense": True}], SEQ, "model.layers[0].units", ["positive integer"]),
    ([{"dropout": 1.5}], SEQ, "model.layers[0].rate", ["[0, 1)", "1.5"]),
    ([{"dropout": -0.1}], SEQ, "model.layers[0].rate", ["[0, 1)"]),
    ([{"conv1d": {"filters": 4, "kernel_size": 0}}], SEQ, "model.layers[0].kernel_size", ["positive integer"]),
    ([{"conv1d": {"filters": -4, "kernel_size": 3}}], SEQ, "model.layers[0].filters", ["positive integer"]),
    ([{"conv1d": {"filters": 4, "kernel_size": 3, "padding": -1}}], SEQ, "model.layers[0].padding",
     ["'same', 'valid'"]),
    ([{"conv1d": {"filters": 4, "kernel_size": 3, "padding": "sam"}}], SEQ, "model.layers[0].padding",
     ["Did you mean 'same'?"]),
    ([{"dense": {"units": 4, "activation": "rleu"}}], SEQ, "model.layers[0].activation", ["Did you mean 'relu'?"]),
    ([{"gru": {"units": 4, "bidirectional": "yes"}}], SEQ, "model.layers[0].bidirectional", ["true or false"]),
    ([{"conv1d": {"filters": 25, "kernel_size": 5, "strides": 2}}, {"conv1d": {"filters": 25, "kernel_size": 5, "strides": 2}},
      {"conv1d": {"filters": 25, "kernel_size": 5, "strides": 2}}, {"conv1d": {"filters": 25, "kernel_size": 5}}],
     SEQ, "model.layers[3] (conv1d)", ["kernel_size 5 is larger than the input length 2", "(None, 2, 25)"]),
    ([{"maxpool2d": 5}], (1, 4, 4), "model.layers[0] (maxpool2d)", ["pool_size 5 is larger than the input height 4"]),
    ([{"conv2d": {"filters": 4, "kernel_size": 3}}], SEQ, "model.layers[0] (conv2d)",
     ["needs images (C, H, W)", "(None, 40, 1)", "conv1d"]),
    ([{"conv1d": {"filters": 4, "kernel_size": 3}}], (40,), "model.layers[0] (conv1d)",
     ["needs a sequence", "flat features (None, 40)", "reshape: [40, 1]"]),
    (["flatten", {"gru": 8}], SEQ, "model.layers[1] (gru)", ["needs a sequence", "flat features (None, 40)"]),
    ([{"lstm": {"units": 8, "dropout": 0.2}}], SEQ, "model.layers[0].dropout", ["num_layers > 1"]),
    (["globalavgpool2d"], SEQ, "model.layers[0] (globalavgpool2d)", ["needs images"]),
    ([{"embedding": {"input_dim": 5, "output_dim": 2}}], (4, 3), "model.layers[0] (embedding)", ["(T,) or (T, 1)"]),
    ([{"reshape": [3, 3]}], SEQ, "model.layers[0].target_shape", ["9 values", "(None, 40, 1) has 40"]),
    ([{"reshape": [-1, 3]}], SEQ, "model.layers[0].target_shape", ["not divisible"]),
    ([{"reshape": [-1, -1]}], SEQ, "model.layers[0].target_shape", ["at most one -1"]),
    ([], SEQ, "model.layers", ["empty"]),
    ("flatten", SEQ, "model.layers", ["must be a list"]),
    ([{"conv1d": {"filters": 16}}], SEQ, "model.layers[0] (conv1d)", ["missing required argument 'kernel_size'"]),
    ([{"conv1d": None, "filters": 16}], SEQ, "model.layers[0]", ["exactly one layer name", "indent"]),
    ([{"flatten": 3}], SEQ, "model.layers[0] (flatten)", ["takes no arguments"]),
    ([42], SEQ, "model.layers[0]", ["must be a name or a mapping"]),
    (["flatten", {"residual": [{"dense": 5}]}], SEQ, "model.layers[1] (residual)",
     ["outputs (None, 5)", "input is (None, 40)"]),
    (["flatten", {"residual": [{"dense": 40}, {"dense": {"units": "x"}}]}], SEQ, "model.layers[1].residual[1].units",
     ["positive integer"]),
    ([{"residual": []}], SEQ, "model.layers[0].residual", ["non-empty list"]),
    ([{"repeat": {"times": 0, "layers": ["relu"]}}], SEQ, "model.layers[0].repeat.times", ["positive integer"]),
    ([{"repeat": {"time": 2, "layers": ["relu"]}}], SEQ, "model.layers[0].repeat.time", ["Did you mean 'times'?"]),
    ([{"repeat": {"times": 2, "layers": ["relu", "flaten"]}}], SEQ, "model.layers[0].repeat.layers[1]",
     ["Did you mean 'flatten'?"]),
    ([{"_target_": "torch.nn.Lineer"}], SEQ, "model.layers[0]._target_", ["Did you mean 'Linear'?"]),
    ([{"_target_": "collections.OrderedDict"}], SEQ, "model.layers[0]._target_", ["not a torch.nn.Module"]),
    ([{"_target_": "no_such_pkg.Mod"}], SEQ, "model.layers[0]._target_", ["cannot import"]),
    ([{"_target_": "torch.nn.Linear", "in_features": 3}], SEQ, "model.layers[0]", ["failed"]),
    ([{"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}], SEQ, "model.layers[0]",
     ["dry forward pass", "(None, 40, 1)"]),
    ([{"softmax": {"axis": -3}}], SEQ, "model.layers[0].axis", ["not a feature axis"]),
    ([{"_target_": "torch.nn.GRU", "input_size": 1, "hidden_size": 2}], SEQ, "model.layers[0]", ["not a tensor"]),
]


@pytest.mark.parametrize("layers,shape,key,fragments", CASES, ids=lambda v: str(v)[:50])
def test_compile_errors_name_the_path(layers, shape, key, fragments):
    err, text = error(layers, shape)
    assert text.startswith(key), text
    assert err.key.startswith(key.split(" ")[0])
    for fragment in fragments:
        assert fragment in text, text


def test_targets_can_be_disallowed():
    err, text = error([{"_target_": "torch.nn.Identity"}], allow_targets=False)
    assert err.key == "model.layers[0]" and "not allowed" in text


def test_head_auto_needs_flat_output():
    err, text = error([{"conv1d": {"filters": 25, "kernel_size": 5, "strides": 2, "padding": 1}}])
    assert err.key == "model.head"
    assert "(None, 19, 25)" in text and "flatten" in text and "global" in text


def test_head_none_mismatch_names_shapes():
    err, text = error(["flatten", {"dense": 5}], extra={"head": "none"})
    assert err.key == "model.head"
    assert "head mismatch" in text and "(None, 10)" in text and "(None, 5)" in text


def test_bad_head_value_and_unknown_model_key():
    err, text = error(["flatten"], extra={"head": "atuo"})
    assert err.key == "model.head" and "Did you mean 'auto'?" in text
    with pytest.raises(NetkilnError) as info:
        compile_model({"layer": ["flatten"]}, SEQ, TEN)
    assert info.value.key == "model.layer" and "Did you mean 'layers'?" in str(info.value)


def test_custom_key_prefix():
    with pytest.raises(NetkilnError) as info:
        compile_model({"layers": ["convd1"]}, SEQ, TEN, key="finetune.model")
    assert str(info.value).startswith("finetune.model.layers[0]:")


def test_missing_layers_key():
    with pytest.raises(NetkilnError) as info:
        compile_model({"head": "auto"}, SEQ, TEN)
    assert info.value.key == "model.layers"


@pytest.mark.parametrize("first", [{"embedding": {"output_dim": 8, "mask_zero": True}}, {"embedding": 16}])
@pytest.mark.parametrize("shape,layout", [((4,), "flat features (None, 4)"), (SEQ, "a sequence (T, F) (None, 40, 1)")])
def test_a_model_starting_with_an_embedding_needs_token_data(first, shape, layout):
    """textcnn/textrnn (or any model whose first layer embeds unsized ids) on a table or a signal: the message says
    it is a text model and which data it needs, naming `model`, not the embedding's input_dim."""
    err, text = error([first, "globalmaxpool1d"], shape)
    assert err.key == "model"
    assert "starts with an embedding over token ids" in text and "needs text data" in text
    assert "data=text" in text and "data=reviews" in text and layout in text


def test_an_embedding_with_its_input_dim_or_after_another_layer_keeps_its_own_checks():
    # input_dim written: integer ids of the user's own, compiled as before
    net = compile_model({"layers": [{"embedding": {"output_dim": 3, "input_dim": 9}}, "flatten"]}, (4,), TEN)
    assert net.output_shape == (10,)
    # an embedding later in the model, without input_dim: the embedding's own key and message
    err, text = error([{"reshape": [40]}, {"embedding": 8}, "flatten"])
    assert err.key == "model.layers[1].input_dim" and "no vocabulary" in text


def test_train_a_text_model_on_a_table_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from netkiln.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "data=iris", "model=textcnn", "trainer.enable_progress_bar=false"]) == 2
    err = capsys.readouterr().err
    assert "model: this model starts with an embedding over token ids" in err
    assert "data=text" in err and "data=reviews" in err and "Traceback" not in err
    assert "input_dim (embedding)" not in err
