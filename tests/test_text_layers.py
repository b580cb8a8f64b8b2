"""Text layers: embedding sizes from the vocabulary, padding that never changes a prediction (mask_zero), parallel
branches, and the errors for text models."""
import logging

import pytest
import torch

from netkiln.compiler import ModelSpecError, compile_model, count_params, summary_table
from netkiln.task import Task

V, T = 40, 12
THREE = Task("multiclass", 3)
LENGTHS = [1, 3, T, 7, 5, 2, 4, 9]         # real tokens per row; the rest of the row is id 0


def token_ids(lengths=LENGTHS, steps=T, seed=0) -> torch.Tensor:
    """Right-padded float ids as a text dataset holds them: ids 1..V-1, then 0s."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (len(lengths), steps), generator=g)
    ids[torch.arange(steps)[None] >= torch.tensor(lengths)[:, None]] = 0
    return ids.float()


def pad(x: torch.Tensor, extra: int) -> torch.Tensor:
    return torch.cat([x, torch.zeros(x.shape[0], extra)], dim=1)


def embedding(mask_zero=True, dim=8):
    return {"embedding": {"output_dim": dim, "mask_zero": mask_zero}}


def textcnn(mask_zero=True):
    widths = [({"conv1d": {"filters": 4, "kernel_size": k, "padding": "same", "activation": "relu"}})
              for k in (3, 4, 5)]
    return [embedding(mask_zero), {"parallel": [[w, "globalmaxpool1d"] for w in widths]}, {"dropout": 0.5}]


def rnn(kind, bidirectional, return_sequences=False, pool="globalmaxpool1d", num_layers=1, mask_zero=True):
    layers = [embedding(mask_zero), {kind: {"units": 5, "bidirectional": bidirectional, "num_layers": num_layers,
                                            "return_sequences": return_sequences}}]
    return layers + ([pool] if return_sequences else [])


MODELS = {
    "textcnn": textcnn,
    "gru": lambda m=True: rnn("gru", False, mask_zero=m),
    "bigru": lambda m=True: rnn("gru", True, mask_zero=m),
    "lstm": lambda m=True: rnn("lstm", False, mask_zero=m),
    "bilstm": lambda m=True: rnn("lstm", True, mask_zero=m),
    "bilstm-2-layers": lambda m=True: rnn("lstm", True, num_layers=2, mask_zero=m),
    "gru-sequences-maxpool": lambda m=True: rnn("gru", False, True, mask_zero=m),
    "bigru-sequences-avgpool": lambda m=True: rnn("gru", True, True, "globalavgpool1d", mask_zero=m),
    "bilstm-sequences-avgpool": lambda m=True: rnn("lstm", True, True, "globalavgpool1d", mask_zero=m),
    "simplernn": lambda m=True: rnn("simplernn", True, mask_zero=m),
    # valid and strided windows, pooling with padding, a residual block and a dense layer over the steps
    "conv-stack": lambda m=True: [
        embedding(m), {"conv1d": {"filters": 6, "kernel_size": 3, "activation": "relu"}},
        {"maxpool1d": {"pool_size": 3, "strides": 2, "padding": "same"}},
        {"residual": [{"conv1d": {"filters": 6, "kernel_size": 3, "padding": "same", "activation": "tanh"}}]},
        {"dense": {"units": 6, "activation": "relu"}},
        {"avgpool1d": {"pool_size": 2, "padding": "same"}},
        {"conv1d": {"filters": 4, "kernel_size": 2, "strides": 2, "padding": "same"}},
        "globalavgpool1d"],
}


def build(layers, vocab_size=V, steps=T, task=THREE):
    return compile_model({"layers": layers}, (steps,), task, vocab_size=vocab_size).eval()


@pytest.mark.parametrize("name", MODELS)
def test_padding_never_changes_the_output(name):
    net = build(MODELS[name]())
    x = token_ids()
    with torch.no_grad():
        y = net(x)
        for extra in (1, 50):
            assert torch.allclose(net(pad(x, extra)), y, atol=1e-5), f"{extra} extra padding changed the output"
        # each row alone: no other row's length plays a part
        assert torch.allclose(net(x[2:3]), y[2:3], atol=1e-5)


@pytest.mark.parametrize("name", ["bigru", "lstm", "gru-sequences-maxpool", "bigru-sequences-avgpool", "conv-stack"])
def test_without_mask_zero_padding_changes_the_output(name):
    """The same networks reading the padding as data: the test above can fail."""
    net = build(MODELS[name](False))
    x = token_ids()
    with torch.no_grad():
        assert not torch.allclose(net(pad(x, 50)), net(x), atol=1e-5)


def test_returned_sequences_are_zero_at_padded_steps_and_final_states_at_the_last_real_token():
    net = compile_model({"layers": [embedding(), {"gru": {"units": 5, "bidirectional": True,
                                                          "return_sequences": True}}], "head": "none"},
                        (T,), None, vocab_size=V).eval()
    x = token_ids()
    with torch.no_grad():
        out = net(x)
        lengths = torch.tensor(LENGTHS)
        padded = torch.arange(T)[None] >= lengths[:, None]
        assert (out[padded] == 0).all() and (out[~padded] != 0).any()
        # row 1 alone, cut to its 3 real tokens, through the same GRU without any padding
        gru, emb = net.layers[1].rnn, net.layers[0].embedding
        ref, _ = gru(emb(x[1:2, :3].long()))
        assert torch.allclose(out[1:2, :3], ref, atol=1e-6)


def test_padding_embeds_to_zeros_and_gets_no_gradient():
    net = build(MODELS["textcnn"]())
    emb = net.layers[0].embedding
    assert emb.padding_idx == 0 and (emb.weight[0] == 0).all()
    net.train()
    net(token_ids()).sum().backward()
    assert (emb.weight.grad[0] == 0).all()


@pytest.mark.parametrize("name", ["textcnn", "conv-stack", "gru-sequences-maxpool"])
def test_gradients_stay_finite_with_empty_and_short_rows(name):
    """Masked max pooling fills with -inf inside; nothing of it may reach a gradient."""
    net = build(MODELS[name]())
    net.train()
    x = token_ids([0, 1, 2, T, 0, 3, 1, 5])
    y = net(x)
    assert torch.isfinite(y).all()
    torch.nn.functional.cross_entropy(y, torch.zeros(len(x), dtype=torch.long)).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_networks_without_mask_keep_the_plain_forward():
    assert not build(MODELS["bigru"](False)).masked
    assert build(MODELS["bigru"]()).masked
    plain = compile_model({"layers": [{"gru": 4}]}, (T, 2), THREE)
    assert not plain.masked


def test_input_dim_comes_from_the_vocabulary_and_params_match_keras():
    net = build(MODELS["textcnn"](), vocab_size=1000)
    d, f = 8, 4
    expect = [1000 * d, sum(d * k * f + f for k in (3, 4, 5)), d * 3 * f + f, 0, d * 4 * f + f, 0, d * 5 * f + f,
              0, 0, 3 * f * 3 + 3]
    assert [r.params for r in net.rows] == expect
    assert count_params(net)["total"] == sum(expect) - expect[1]
    assert [r.output_shape for r in net.rows][:3] == [(T, d), (3 * f,), (T, f)]
    table = summary_table(net)
    assert "embedding (Embedding)" in table and "parallel (Parallel)" in table and "(None, 12, 8)" in table


def test_rnn_params_match_keras_after_an_embedding():
    net = build([embedding(dim=6), {"gru": {"units": 5, "bidirectional": True}}], vocab_size=50)
    # Keras GRU (reset_after=True): 3 * (units * (input + units) + 2 * units) per direction
    assert [r.params for r in net.rows] == [50 * 6, 2 * 3 * (5 * (6 + 5) + 2 * 5), 10 * 3 + 3]


def test_written_input_dim_is_kept_and_scalar_shorthand_is_output_dim():
    net = compile_model({"layers": [{"embedding": 16}, "globalavgpool1d"]}, (T,), THREE, vocab_size=30)
    assert net.layers[0].embedding.weight.shape == (30, 16)
    net = compile_model({"layers": [{"embedding": {"output_dim": 4, "input_dim": 50}}, "flatten"]}, (T,), THREE)
    assert net.layers[0].embedding.weight.shape == (50, 4)


def test_embedding_without_vocabulary_or_input_dim_names_the_key():
    with pytest.raises(ModelSpecError) as info:      # first: a text model on other data
        compile_model({"layers": [{"embedding": {"output_dim": 8}}, "flatten"]}, (T,), THREE)
    assert info.value.key == "model" and "needs text data" in str(info.value)
    with pytest.raises(ModelSpecError) as info:      # later: the embedding's own input_dim
        compile_model({"layers": ["relu", {"embedding": {"output_dim": 8}}, "flatten"]}, (T,), THREE)
    assert info.value.key == "model.layers[1].input_dim"
    assert "no vocabulary" in str(info.value) and "write input_dim" in str(info.value)


def test_input_dim_smaller_than_the_vocabulary_is_refused():
    with pytest.raises(ModelSpecError) as info:
        build([{"embedding": {"output_dim": 8, "input_dim": 10}}, "globalmaxpool1d"], vocab_size=V)
    assert info.value.key == "model.layers[0].input_dim" and f"vocabulary of {V} ids" in str(info.value)


@pytest.mark.parametrize("layers", [["flatten", {"dense": 8}], [{"gru": 8}], [{"conv1d": {"filters": 2,
                                                                                         "kernel_size": 3}}]])
def test_text_model_must_start_with_an_embedding(layers):
    with pytest.raises(ModelSpecError) as info:
        compile_model({"layers": layers}, (T,), THREE, vocab_size=V)
    message = str(info.value)
    assert info.value.key == "model.layers[0]"
    assert "token ids" in message and "embedding" in message and "model=textcnn" in message


def test_flatten_after_a_masked_sequence_is_noted(caplog):
    with caplog.at_level(logging.INFO, logger="netkiln"):
        net = build([embedding(), "flatten"])
    assert "model.layers[1] (flatten) reads the padded steps" in caplog.text
    assert net(token_ids()).shape == (len(LENGTHS), 3)


def test_parallel_concatenates_branches_on_the_feature_axis():
    flat = compile_model({"layers": [{"parallel": [[{"dense": 3}], [{"dense": 5}, "relu"]]}], "head": "none"},
                         (4,), None)
    assert flat.output_shape == (8,)
    x = torch.randn(2, 4)
    branches = flat.layers[0].branches
    assert torch.equal(flat(x), torch.cat([branches[0](x), branches[1](x)], dim=1))
    seq = compile_model({"layers": [{"parallel": [[{"conv1d": {"filters": 3, "kernel_size": 3, "padding": "same"}}],
                                                  [{"dense": 2}]]}], "head": "none"}, (10, 4), None)
    assert seq.output_shape == (10, 5) and seq(torch.randn(2, 10, 4)).shape == (2, 10, 5)
    img = compile_model({"layers": [{"parallel": [[{"conv2d": {"filters": 3, "kernel_size": 3, "padding": "same"}}],
                                                  [{"conv2d": {"filters": 2, "kernel_size": 1}}]]}], "head": "none"},
                        (1, 6, 6), None)
    assert img.output_shape == (5, 6, 6) and img(torch.randn(2, 1, 6, 6)).shape == (2, 5, 6, 6)
    assert [r.name for r in img.rows] == ["parallel", "conv2d", "conv2d_1"] and img.rows[1].depth == 1


@pytest.mark.parametrize("parallel,key,fragments", [
    ([[{"conv1d": {"filters": 2, "kernel_size": 3}}], [{"conv1d": {"filters": 2, "kernel_size": 5}}]],
     "model.layers[1].parallel[1] (parallel)", ["branch 1 outputs (None, 8, 2)", "branch 0 outputs (None, 10, 2)"]),
    ([["globalmaxpool1d"], [{"conv1d": {"filters": 2, "kernel_siz": 3}}]], "model.layers[1].parallel[1][0].kernel_siz",
     ["unknown argument 'kernel_siz'", "kernel_size"]),
    ([["globalmaxpool1d"], {"dense": 3}], "model.layers[1].parallel[1] (parallel)", ["each branch", "list of layers"]),
    ([], "model.layers[1].parallel", ["non-empty list of branches"]),
    ([["globalmaxpool1d"], []], "model.layers[1].parallel[1] (parallel)", ["non-empty list"]),
])
def test_parallel_errors_name_the_branch(parallel, key, fragments):
    with pytest.raises(ModelSpecError) as info:
        build([embedding(), {"parallel": parallel}])
    message = str(info.value)
    assert message.startswith(key), message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
def test_an_rnn_that_skips_padding_is_refused_by_formats_that_cannot_capture_it(fmt):
    from netkiln.artifacts.export import _refuse_packed_rnn
    from netkiln.errors import NetkilnError

    with pytest.raises(NetkilnError, match="format=torchscript") as err:
        _refuse_packed_rnn(build(MODELS["bigru"]()), fmt)
    assert err.value.key == "format"
    _refuse_packed_rnn(build(MODELS["bigru"]()), "torchscript")           # traced: it runs
    _refuse_packed_rnn(build(MODELS["textcnn"]()), fmt)                    # no RNN: exported as usual
    _refuse_packed_rnn(build(MODELS["bigru"](False)), fmt)                 # no mask: nothing packed
