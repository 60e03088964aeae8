"""The seed articles' workflow (scripts/seed_mnist_training.py): PyTorch training with Adam,
CrossEntropyLoss, ReduceLROnPlateau and early stopping, translated and continued in Keras; the
continued runs must agree with the original continued in PyTorch."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "seed_mnist_training.py"


def test_seed_workflow_continues_in_keras(capsys):
    spec = importlib.util.spec_from_file_location("seed_mnist_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--epochs-torch", "2", "--epochs-keras", "3"]) == 0
    out = capsys.readouterr().out
    assert "optimizer state ported (64 step(s))" in out
    assert "xlate.TorchReduceLROnPlateau" in out and "PASS" in out
    final = next(line for line in out.splitlines() if line.startswith("final lr"))
    assert "torch 0.01 " not in final  # the plateau reduced the lr during the Keras continuation
