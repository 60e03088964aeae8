"""``xlate demo``: the main job on the bundled example, end to end.

The seed articles' MNIST MLP (``fixtures/mnist_mlp.py`` + ``fixtures/mnist_mlp.pth``) goes
PyTorch -> Keras (.keras) -> PyTorch (model.py + weights), each step through the same code as
``xlate torch2tf``/``tf2torch`` with its parity gate, and the round trip is compared with the
original module. Prints both parity reports and where the files are.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from ._common import ParityFailed, Steps, fail_parity, human_size, print_report, stdout_console
from ._errors import handles_errors


def fixtures_dir() -> Path:
    """The repository's fixtures/ folder (the demo runs from a source checkout, as `make demo` does)."""
    from ..errors import BadInputError

    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (base / "fixtures" / "mnist_mlp.pth").exists():
            return base / "fixtures"
    raise BadInputError("the demo's fixtures (fixtures/mnist_mlp.py, mnist_mlp.pth) are not here",
                        hint="run `xlate demo` from a checkout of the xlate repository (or `make demo` there)")


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the converted models here (default: a new temporary folder, kept).")
@click.option("--force", is_flag=True, help="Replace earlier demo outputs in DIR.")
@handles_errors
def demo(out_dir, force):
    """Convert the bundled MNIST MLP PyTorch -> Keras -> PyTorch and show both parity reports."""
    start = time.perf_counter()
    fixtures = fixtures_dir()
    out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="xlate-demo-"))
    console = stdout_console()
    console.print(f"[bold]xlate demo[/bold]: the MNIST MLP from {fixtures}/mnist_mlp.py "
                  "(Linear 784->10, Sigmoid, Linear 10->10, LogSoftmax)")

    import numpy as np
    import torch

    from ..load import load_keras, load_torch, load_torch_package
    from ..parity_report import compare_arrays
    from . import tf2torch, torch2tf

    steps = Steps(show=True)
    keras_path = out_dir / "mnist_mlp.keras"
    torch_dir = out_dir / "mnist_mlp_torch"
    with steps.step("loading the PyTorch model"):
        source = load_torch(fixtures / "mnist_mlp.pth", model_class=f"{fixtures / 'mnist_mlp.py'}:MnistMLP",
                            input_shapes=["2,784"])
    try:
        _, report1, path1 = torch2tf.convert_and_save(source, keras_path, force=force, steps=steps)
    except ParityFailed as e:
        fail_parity(e.report, None, f"PyTorch -> {e.what}: parity FAILED")
    print_report(report1, f"1. PyTorch -> Keras ({keras_path}, via the {path1} path)")

    with steps.step("loading the Keras model back"):
        keras_loaded = load_keras(keras_path, architecture=True)
    try:
        _, report2, path2 = tf2torch.convert_and_save(keras_loaded, torch_dir, force=force, steps=steps)
    except ParityFailed as e:
        fail_parity(e.report, None, f"Keras -> {e.what}: parity FAILED")
    print_report(report2, f"2. Keras -> PyTorch ({torch_dir}/, via the {path2} path)")

    # the round trip against the original, on the same seeded batch
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 784)).astype(np.float32))
    with torch.no_grad():
        original = source.model(x).numpy()
        back = load_torch_package(torch_dir)(x).numpy()
    trip = compare_arrays("log-probabilities", original, back, 1e-5, 1e-4)
    verdict = "[bold green]PASS[/bold green]" if trip.passed else "[bold red]FAIL[/bold red]"
    console.print(f"3. round trip PyTorch -> Keras -> PyTorch vs the original: {verdict}  "
                  f"max abs err {trip.max_abs_err:.3g} on {x.shape[0]} images")
    console.print(f"\n[bold]outputs[/bold] in {out_dir}:\n  {keras_path} ({human_size(keras_path)})\n"
                  f"  {torch_dir}/ ({', '.join(sorted(p.name for p in torch_dir.iterdir()))})")
    console.print(f"try: xlate check {keras_path} {torch_dir}   (done in {time.perf_counter() - start:.1f} s)")
    if not trip.passed:
        raise SystemExit(1)
