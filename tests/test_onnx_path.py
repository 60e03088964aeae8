"""The ONNX fallback: torch -> ONNX -> onnx2tf -> Keras, and Keras -> ONNX -> torch.

The torch -> Keras tests need onnx2tf, which lives in its own venv (scripts/setup_onnx2tf.sh);
they skip, saying so, when no onnx2tf executable can be found. Every parity claim compares
against the source framework's own output.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from fixtures import onnx_fallback
from xlate import onnx_path, onnx_tools
from xlate.errors import BadInputError, UnsupportedOpError
from xlate.parity import check_parity
from xlate.record import record_of

needs_onnx2tf = pytest.mark.skipif(
    onnx_tools.find_onnx2tf() is None and not onnx_tools.onnx2tf_in_process(),
    reason=f"no onnx2tf executable: {onnx_tools.SETUP_HINT}",
)


@needs_onnx2tf
@pytest.mark.parametrize("io_layout", ["source", "native"])
def test_torch_to_keras_through_onnx2tf_has_parity(io_layout, tmp_path):
    module = onnx_fallback.torch_model()
    model = onnx_path.torch_to_keras(module, onnx_fallback.torch_example_inputs(), io_layout=io_layout,
                                     workdir=tmp_path)
    record = record_of(model)
    assert record.path == "onnx" and record.direction == "torch2keras"
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file()
    assert onnx_path.saved_model_dir(model) == str(tmp_path / "saved_model")
    if io_layout == "source":
        assert tuple(model.inputs[0].shape) == (None, 3, 16, 16)
    else:
        assert tuple(model.inputs[0].shape) == (None, 16, 16, 3)
        assert record.io.input_perms == ((0, 2, 3, 1),)
    report = check_parity(module, model)
    assert report.passed, str(report)
    assert report.max_abs_err < 1e-5
    assert not model.trainable_weights  # a SavedModel graph: stated as not trainable


@needs_onnx2tf
def test_auto_falls_back_to_onnx_for_bilinear_and_says_so():
    import xlate

    module = onnx_fallback.torch_model()
    model = xlate.torch_to_keras(module, onnx_fallback.torch_example_inputs(), via="auto")
    record = record_of(model)
    assert record.path == "onnx"
    fallback = [n for n in record.notes if "fell back to ONNX" in n]
    assert fallback and "bilinear" in fallback[0], record.notes
    assert any(n.startswith("parity: max abs err") for n in record.notes)
    with pytest.raises(UnsupportedOpError):
        xlate.torch_to_keras(module, onnx_fallback.torch_example_inputs(), via="direct", check=False)


@needs_onnx2tf
def test_torch_to_keras_multi_input_multi_output(tmp_path):
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(5, 6)

        def forward(self, image, vector):
            return self.conv(image), self.fc(vector).relu()

    torch.manual_seed(0)
    module = TwoHeads().eval()
    example = (torch.randn(2, 3, 8, 8), torch.randn(2, 5))
    model = onnx_path.torch_to_keras(module, example, io_layout="source", workdir=tmp_path)
    report = check_parity(module, model)
    assert report.passed, str(report)
    assert [o.shape for o in report.per_output] == [[2, 4, 8, 8], [2, 6]]


def test_missing_onnx2tf_is_one_line_with_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_tools, "find_onnx2tf", lambda explicit=None: None)
    monkeypatch.setattr(onnx_tools, "onnx2tf_in_process", lambda: False)
    monkeypatch.delenv(onnx_tools.ONNX2TF_ENV, raising=False)
    module = onnx_fallback.torch_model()
    with pytest.raises(onnx_tools.OnnxToolError) as err:
        onnx_path.torch_to_keras(module, onnx_fallback.torch_example_inputs(), workdir=tmp_path)
    assert "onnx2tf not found" in str(err.value) and "\n" not in str(err.value)
    assert "setup_onnx2tf.sh" in err.value.hint


def test_explicit_onnx2tf_path_must_exist(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        onnx_tools.use_onnx2tf(tmp_path / "nope")
    onnx_tools.use_onnx2tf(None)


def test_shipped_calibration_file_is_the_generated_one():
    shipped = np.load(onnx_tools.CALIBRATION_FIXTURE)
    np.testing.assert_array_equal(shipped, onnx_tools.calibration_images())
    assert shipped.shape == (20, 32, 32, 3) and shipped.min() >= 0 and shipped.max() <= 1


@pytest.mark.parametrize("io_layout", ["source", "native"])
def test_keras_to_torch_through_onnx_has_parity(io_layout, tmp_path):
    model = onnx_fallback.keras_model()
    module = onnx_path.keras_to_torch(model, io_layout=io_layout, workdir=tmp_path)
    record = record_of(module)
    assert record.path == "onnx" and record.direction == "keras2torch"
    report = check_parity(model, module)
    assert report.passed, str(report)
    assert report.max_abs_err < 1e-5
    x = np.random.default_rng(3).standard_normal((2, 12, 12, 3)).astype("float32")
    expected = model(x).numpy()
    fed = torch.from_numpy(x if io_layout == "source" else x.transpose(0, 3, 1, 2).copy())
    np.testing.assert_allclose(module(fed).detach().numpy(), expected, atol=1e-5, rtol=1e-4)


def test_keras_to_torch_module_trains_and_saves(tmp_path):
    model = onnx_fallback.keras_model()
    module = onnx_path.keras_to_torch(model, workdir=tmp_path)
    params = dict(module.named_parameters())
    assert params and all(p.requires_grad for p in params.values())
    x = torch.randn(2, 12, 12, 3)
    loss = module(x).square().mean()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    state = module.state_dict()
    again = onnx_path.keras_to_torch(model, workdir=tmp_path / "again")
    again.load_state_dict(state)
    torch.testing.assert_close(again(x), module(x))


def test_unsupported_onnx_ops_are_listed_at_once(tmp_path):
    inputs = keras.Input((6, 4))
    x = keras.layers.GRU(3, return_sequences=True, name="gru")(inputs)
    x = keras.layers.LSTM(2, name="lstm")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(UnsupportedOpError) as err:
        onnx_path.keras_to_torch(model, workdir=tmp_path)
    ops = {op for op, _ in err.value.unsupported}
    # tf2onnx emits the GRU as a Loop over time steps and the LSTM as an LSTM op: both named
    assert {"Loop", "LSTM"} <= ops, err.value.unsupported
    assert "Loop" in str(err.value) and "LSTM" in str(err.value)


def test_keras_auto_falls_back_to_onnx_for_a_layer_the_direct_path_refuses_and_says_so():
    import xlate

    model = onnx_fallback.keras_model()
    module = xlate.keras_to_torch(model, via="auto")
    record = record_of(module)
    assert record.path == "onnx"
    fallback = [n for n in record.notes if "fell back to ONNX" in n]
    assert fallback and "SineLayer" in fallback[0], record.notes
    report = check_parity(model, module)
    assert report.passed and report.max_abs_err < 1e-5, str(report)


def _export_static(tmp_path):
    module = onnx_fallback.torch_model()
    onnx_file = tmp_path / "model.onnx"
    torch.onnx.export(module, onnx_fallback.torch_example_inputs(), str(onnx_file), input_names=["input_0"],
                      external_data=False)
    return onnx_file


@needs_onnx2tf
def test_static_batch_image_model_converts_offline_with_the_local_calibration(tmp_path):
    """onnx2tf fetches sample images for static-batch RGB models (and fails with no network): the
    generated local file written next to the ONNX file is used instead."""
    onnx_file = _export_static(tmp_path)
    how = onnx_tools.run_onnx2tf(onnx_file, tmp_path / "saved")
    assert "onnx2tf" in how
    assert (tmp_path / "saved" / "saved_model.pb").is_file()
    assert (tmp_path / onnx_tools.CALIBRATION_FILE).is_file()


def test_in_process_onnx2tf_inside_its_own_venv(tmp_path):
    """The in-process branch, exercised where onnx2tf's pinned stack is installed: its venv."""
    import subprocess
    import sys
    from pathlib import Path

    exe = onnx_tools.find_onnx2tf()
    python = Path(exe).parent / "python" if exe else None
    if python is None or not python.is_file():
        pytest.skip(f"no onnx2tf venv with a python next to onnx2tf: {onnx_tools.SETUP_HINT}")
    onnx_file = _export_static(tmp_path)
    root = Path(onnx_tools.__file__).resolve().parents[1]
    code = ("import sys; from pathlib import Path; from xlate import onnx_tools; "
            "assert onnx_tools.onnx2tf_in_process(); "
            "print(onnx_tools.run_onnx2tf(Path(sys.argv[1]), Path(sys.argv[2])))")
    proc = subprocess.run([str(python), "-c", code, str(onnx_file), str(tmp_path / "saved")], capture_output=True,
                          text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
                          check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "in-process" in proc.stdout
    assert (tmp_path / "saved" / "saved_model.pb").is_file()
    assert sys.executable != str(python)
