"""ONNX in, on hand-built graphs: xlate's interpreter with static constants, converted to Keras and
written as torch code, each compared with onnxruntime on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper

from xlate.errors import BadInputError


def _save(tmp_path, name, nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def conv_graph(tmp_path):
    """SAME_UPPER strided conv, Clip(0, 6), global pooling, Flatten, Gemm(transB): a mobile head."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("w", rng.standard_normal((4, 3, 3, 3)).astype("float32")),
             _init("b", rng.standard_normal(4).astype("float32")),
             _init("lo", np.float32(0)), _init("hi", np.float32(6)),
             _init("fc_w", rng.standard_normal((5, 4)).astype("float32")),
             _init("fc_b", rng.standard_normal(5).astype("float32"))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])  # a free batch axis
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    return _save(tmp_path, "conv_head", nodes, [x], [y], inits)


def token_graph(tmp_path):
    """Token ids through an embedding table (Gather), a 3-way Split, Concat, Softmax, ReduceMean."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("MatMul", ["e", "proj"], ["h"], name="proj"),
        helper.make_node("Split", ["h", "sizes"], ["a", "b", "c"], name="split", axis=-1),
        helper.make_node("Concat", ["c", "a"], ["ca"], name="concat", axis=-1),
        helper.make_node("Concat", ["b", "b"], ["bb"], name="concat_b", axis=-1),
        helper.make_node("Softmax", ["ca"], ["s"], name="softmax", axis=-1),
        helper.make_node("Mul", ["s", "bb"], ["m"], name="gate"),
        helper.make_node("ReduceMean", ["m", "axes"], ["y"], name="mean", keepdims=0),
    ]
    inits = [_init("table", rng.standard_normal((11, 6)).astype("float32")),
             _init("proj", rng.standard_normal((6, 12)).astype("float32")),
             _init("sizes", np.array([4, 4, 4], dtype=np.int64)), _init("axes", np.array([1], dtype=np.int64))]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2, "T"])  # a free sequence length
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])
    return _save(tmp_path, "tokens", nodes, [ids], [y], inits)


def _convert_both_ways(path, tmp_path, **options):
    """Keras model and generated torch module from the file, each checked against onnxruntime."""
    import xlate
    from xlate import onnx_codegen
    from xlate.loaders.onnx import load_onnx, runtime_module, static_graph_module
    from xlate.parity import check_parity, check_torch_against_reference

    onnx_model = load_onnx(path, **options)
    module = static_graph_module(onnx_model)
    reference = runtime_module(onnx_model)
    samples = onnx_model.samples(3)
    keras_model = xlate.torch_to_keras(module, onnx_model.example, via="direct", check=False)
    report = check_parity(reference, keras_model, samples)
    assert report.passed, str(report)
    names = {attr: name for name, attr in module._tensor_attr.items()}
    text, state = onnx_codegen.generate(module, onnx_model.example, names, [s.name for s in onnx_model.specs],
                                        name=path.stem, source=path.name, nodes=len(onnx_model.proto.graph.node),
                                        opset=18)
    net = onnx_codegen.build(text, state)
    expected = [[o.numpy() for o in (reference(*[torch.from_numpy(a) for a in s]),)] for s in samples]
    report = check_torch_against_reference(net, samples, expected)
    assert report.passed, str(report)
    return onnx_model, keras_model, text


def test_conv_head_converts_both_ways_with_a_free_batch(tmp_path):
    onnx_model, keras_model, text = _convert_both_ways(conv_graph(tmp_path), tmp_path)
    assert onnx_model.specs[0].shape == (2, 3, 9, 9)  # the free batch axis got 2 rows
    assert "torch.conv2d(" in text and "self.fc_w" in text
    assert "register_buffer('lo'" not in text  # Clip's bounds are folded in, not weights
    assert {w.path.split("/")[0] for w in keras_model.trainable_weights}  # trainable Keras weights


def test_token_ids_stay_within_the_embedding_table(tmp_path):
    path = token_graph(tmp_path)
    from xlate.loaders.onnx import load_onnx

    with pytest.raises(BadInputError, match="free size"):
        load_onnx(path)
    onnx_model, _, text = _convert_both_ways(path, tmp_path, input_shapes=["2,7"])
    spec = onnx_model.specs[0]
    assert spec.shape == (2, 7) and spec.high == 11  # the Gather's table has 11 rows
    assert int(onnx_model.example[0].max()) < 11
    assert "def forward(self, ids):" in text


def test_input_shape_must_keep_the_fixed_sizes(tmp_path):
    from xlate.loaders.onnx import load_onnx

    with pytest.raises(BadInputError, match="does not fit input 'ids'"):
        load_onnx(token_graph(tmp_path), input_shapes=["3,7"])
