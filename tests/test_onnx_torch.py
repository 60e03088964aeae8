"""xlate.onnx_torch runs ONNX graphs with torch ops: each op against onnxruntime, the reference
ONNX implementation, on the attribute combinations whose semantics are easy to get wrong."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

from xlate.onnx_torch import OnnxGraphModule, unsupported_ops

RNG = np.random.default_rng(0)
X4 = RNG.standard_normal((2, 4, 7, 6)).astype(np.float32)


def _graph(op, inputs: dict, attrs=None, initializers=None, n_out=1, opset=17):
    """One-node model: ``inputs`` are graph inputs (name -> array); ``initializers`` constants."""
    initializers = initializers or {}
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, list(inputs) + list(initializers), outs, **(attrs or {}))
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _compare(model, inputs: dict, atol=1e-5):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, inputs)
    module = OnnxGraphModule(model)
    got = module(*[torch.from_numpy(v) for v in inputs.values()])
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert tuple(g.shape) == e.shape
        np.testing.assert_allclose(g.detach().numpy(), e, atol=atol, rtol=1e-5)


W = RNG.standard_normal((5, 4, 3, 3)).astype(np.float32)
B = RNG.standard_normal(5).astype(np.float32)

CASES = {
    "conv asymmetric pads, stride 2": ("Conv", {"pads": [0, 1, 1, 0], "strides": [2, 2]}, {"w": W, "b": B}),
    "conv SAME_UPPER": ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, {"w": W}),
    "conv SAME_LOWER": ("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, {"w": W}),
    "conv dilated": ("Conv", {"dilations": [2, 1], "pads": [2, 1, 2, 1]}, {"w": W}),
    "grouped conv": ("Conv", {"group": 2, "pads": [1, 1, 1, 1]},
                     {"w": RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)}),
    "conv transpose, pads and output_padding": (
        "ConvTranspose", {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]},
        {"w": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)}),
    "max pool ceil mode with pads": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                 "ceil_mode": 1}, {}),
    "max pool SAME_UPPER": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, {}),
    "avg pool excluding pads": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 0, 0, 1]}, {}),
    "avg pool counting pads": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                               "count_include_pad": 1, "strides": [2, 2]}, {}),
    "avg pool ceil mode": ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, {}),
    "global average pool": ("GlobalAveragePool", {}, {}),
    "depth to space DCR": ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, {}),
    "depth to space CRD": ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, {}),
    "transpose": ("Transpose", {"perm": [0, 2, 3, 1]}, {}),
    "softmax axis 1": ("Softmax", {"axis": 1}, {}),
    "reduce mean axes as input, keepdims 0": ("ReduceMean", {"keepdims": 0}, {"axes": np.array([1, -1])}, 1, 18),
    "slice negative step": ("Slice", {}, {"starts": np.array([-1, 5]), "ends": np.array([-100, 0]),
                                          "axes": np.array([2, 3]), "steps": np.array([-2, -1])}),
    "gather negative indices": ("Gather", {"axis": 1}, {"idx": np.array([[0, -1], [2, 1]])}),
    "pad reflect": ("Pad", {"mode": "reflect"}, {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1])}),
    "pad edge": ("Pad", {"mode": "edge"}, {"pads": np.array([0, 0, 2, 0, 0, 0, 0, 3])}),
    "resize nearest asymmetric floor": (
        "Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        {"roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}),
    "resize linear half pixel": (
        "Resize", {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        {"roi": np.array([], np.float32), "scales": np.array([1, 1, 1.5, 2], np.float32)}),
    "batch norm": ("BatchNormalization", {"epsilon": 1e-3},
                   {"s": RNG.uniform(0.5, 2, 4).astype(np.float32), "bb": RNG.standard_normal(4).astype(np.float32),
                    "m": RNG.standard_normal(4).astype(np.float32), "v": RNG.uniform(0.5, 2, 4).astype(np.float32)}),
    "layer norm": ("LayerNormalization", {"axis": -2, "epsilon": 1e-3},
                   {"s": RNG.standard_normal((7, 6)).astype(np.float32)}),
    "hard sigmoid": ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, {}),
    "leaky relu": ("LeakyRelu", {"alpha": 0.2}, {}),
    "split three": ("Split", {"axis": 1, "num_outputs": 2}, {}, 2, 18),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_onnxruntime(name):
    op, attrs, consts, *rest = CASES[name]
    n_out, opset = rest if rest else (1, 17)
    model = _graph(op, {"x": X4}, attrs, consts, n_out=n_out, opset=opset)
    _compare(model, {"x": X4})


def test_gemm_and_matmul_chain():
    a = RNG.standard_normal((3, 5)).astype(np.float32)
    w = RNG.standard_normal((4, 5)).astype(np.float32)
    c = RNG.standard_normal(4).astype(np.float32)
    model = _graph("Gemm", {"a": a}, {"transB": 1, "alpha": 0.5, "beta": 2.0}, {"w": w, "c": c})
    _compare(model, {"a": a})


def test_shape_arithmetic_reshape():
    """Shape -> Gather -> Concat -> Reshape, the dynamic-batch flatten tf2onnx emits."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0), "zero"), numpy_helper.from_array(np.array([0]), "zero1"),
             numpy_helper.from_array(np.array([-1]), "minus1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 7, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _compare(model, {"x": X4})


def test_unsupported_ops_are_all_named():
    nodes = [helper.make_node("NonMaxSuppression", ["x"], ["a"], name="nms"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Loop", ["b"], ["y"], name="loop")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph)
    assert unsupported_ops(model) == [("NonMaxSuppression", "nms"), ("Loop", "loop")]


def test_supported_ops_with_attributes_it_cannot_reproduce_are_named_before_running():
    nodes = [helper.make_node("AveragePool", ["x"], ["a"], name="dilated", kernel_shape=[2, 2], dilations=[2, 2]),
             helper.make_node("AveragePool", ["a"], ["b"], name="plain", kernel_shape=[2, 2]),
             helper.make_node("Resize", ["b", "", "scales"], ["c"], name="cubic", mode="cubic"),
             helper.make_node("Resize", ["c", "", "scales"], ["y"], name="nearest", mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    assert unsupported_ops(model) == [
        ("AveragePool(dilations != 1)", "dilated"),
        ("Resize(mode=cubic, coordinate_transformation_mode=half_pixel)", "cubic"),
    ]
