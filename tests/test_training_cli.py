"""`xlate check-train`: exit codes, the per-step table and the JSON report, both directions."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xlate.cli import main
from xlate.training.samples import paired_mlp


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("check_train")
    tm, km = paired_mlp(6, 4)
    torch.save(tm, root / "mlp.pth")
    km.save(root / "mlp.keras")
    km.layers[-1].kernel.assign(km.layers[-1].kernel.numpy() + 0.01)  # a target that is not the source
    km.save(root / "tampered.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.standard_normal((32, 6)).astype(np.float32),
             y=rng.standard_normal((32, 4)).astype(np.float32))
    return root


def _run(*args):
    return CliRunner().invoke(main, ["check-train", *map(str, args)], catch_exceptions=False)


def test_torch_to_keras_passes_and_writes_json(files):
    report = files / "report.json"
    result = _run(files / "mlp.pth", files / "mlp.keras", "--trust", "--optimizer", "SGD(lr=0.1, momentum=0.9)",
                  "--loss", "CrossEntropyLoss(label_smoothing=0.1)", "--schedule", "StepLR(step_size=1, gamma=0.5)",
                  "--steps-per-epoch", "3", "--steps", "6", "--json", report)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "xlate.TorchSGD" in result.output
    data = json.loads(report.read_text())
    assert data["passed"] and len(data["steps"]) == 7
    lrs = [s["target_lr"] for s in data["steps"][1:]]
    assert lrs[0] == pytest.approx(0.1) and lrs[3] == pytest.approx(0.05)


def test_keras_to_torch_with_data_file(files):
    result = _run(files / "mlp.keras", files / "mlp.pth", "--trust", "--optimizer", "Nadam(learning_rate=0.01)",
                  "--loss", "Huber(delta=0.5)", "--data", files / "data.npz", "--batch-size", "8", "--steps", "8")
    assert result.exit_code == 0, result.output
    assert "keras2torch" in result.output


def test_mismatched_models_exit_1(files):
    result = _run(files / "mlp.pth", files / "tampered.keras", "--trust", "--optimizer", "Adam(lr=0.01)",
                  "--loss", "MSELoss()")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output


@pytest.mark.parametrize("args,message", [
    (["--optimizer", "Adam(lr=__import__('os'))", "--loss", "MSELoss()"], "literals"),
    (["--optimizer", "Adamm()", "--loss", "MSELoss()"], "no such torch optimizer"),
])
def test_bad_specs_exit_2(files, args, message):
    result = _run(files / "mlp.pth", files / "mlp.keras", "--trust", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_two_models_of_one_framework_exit_2(files):
    result = _run(files / "mlp.keras", files / "tampered.keras", "--optimizer", "Adam()", "--loss", "MeanSquaredError()")
    assert result.exit_code == 2 and "compares PyTorch with Keras" in result.output


@pytest.mark.slow  # two recipes x two directions: ~12 s alone, ~40 s on a loaded machine
@pytest.mark.parametrize("recipe", ["hf", "timm"])
def test_recipes_pass_both_directions_with_clipping(recipe, tmp_path):
    report = tmp_path / f"{recipe}.json"
    result = _run("--recipe", recipe, "--steps", "8", "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["passed"] and [r["direction"] for r in data["runs"]] == ["torch2keras", "keras2torch"]
    for run in data["runs"]:
        assert run["clipped_steps"], f"{recipe} {run['direction']}: clipping never active"
        assert {"source_lr", "target_lr", "source_loss", "max_abs_weight_err"} <= set(run["steps"][1])
        if recipe == "timm":
            assert run["max_abs_ema_err"] is not None and run["max_abs_ema_err"] <= 1e-4
    assert "clipping active on step(s)" in result.output


def test_recipe_on_given_models(files):
    result = _run(files / "mlp.pth", files / "mlp.keras", "--trust", "--recipe", "hf", "--steps", "6")
    assert result.exit_code == 0, result.output
    assert "torch2keras" in result.output and "keras2torch" not in result.output


def test_torch_loop_options(files):
    result = _run(files / "mlp.pth", files / "mlp.keras", "--trust", "--optimizer", "SGD(lr=0.1, momentum=0.9)",
                  "--loss", "CrossEntropyLoss()", "--clip-grad-norm", "0.1", "--ema", "0.9", "--grad-accum-steps", "2")
    assert result.exit_code == 0, result.output
    assert "torch_clip_grad_norm" in result.output or "clip" in result.output
    bad = _run(files / "mlp.keras", files / "mlp.pth", "--trust", "--optimizer", "SGD()", "--loss", "MeanSquaredError()",
               "--ema", "0.9")
    assert bad.exit_code == 2 and "torch loop" in bad.output
