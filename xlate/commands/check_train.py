"""``xlate check-train SOURCE TARGET``: do the two models train the same?

Loads SOURCE and TARGET (one PyTorch, one Keras model, e.g. a model and its conversion), builds the
source's optimizer, loss and schedule from the given specs (in the source framework's own names),
translates them with xlate and runs k identical training steps on both sides
(``xlate.check_training_parity``). Prints the per-step table; exit 0 when the weights and the
predictions agree within --atol after every step, 1 when not, 2 on bad input.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import click

from ..cli import handles_errors
from ._common import model_options, print_report, torch_options, write_json_report

_NAMESPACES = {
    ("torch", "optimizer"): ("torch.optim",),
    ("torch", "loss"): ("torch.nn",),
    ("torch", "schedule"): ("torch.optim.lr_scheduler", "xlate.training.torch_schedules"),
    ("keras", "optimizer"): ("keras.optimizers", "xlate.training.keras_optimizers"),
    ("keras", "loss"): ("keras.losses", "xlate.training.keras_losses"),
    ("keras", "schedule"): ("keras.optimizers.schedules", "keras.callbacks"),
}


def parse_spec(text: str, framework: str, kind: str):
    """'Adam(lr=0.01, betas=(0.9, 0.99))' -> (class, args, kwargs); literal arguments only (nothing
    in the spec is executed)."""
    import importlib

    from ..errors import BadInputError

    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, (ast.Name, ast.Attribute)):
        node = ast.Call(func=node, args=[], keywords=[])
    if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Name, ast.Attribute)):
        raise BadInputError(f"--{kind} {text!r} is not a class call like Adam(lr=0.01)")
    name = ast.unparse(node.func).rsplit(".", 1)[-1]
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise BadInputError(f"--{kind} {text!r}: arguments must be literals (numbers, strings, tuples, lists)") from None
    for namespace in _NAMESPACES[(framework, kind)]:
        cls = getattr(importlib.import_module(namespace), name, None)
        if isinstance(cls, type):
            return cls, args, kwargs
    raise BadInputError(f"--{kind} {name}: no such {framework} {kind} in {', '.join(_NAMESPACES[(framework, kind)])}",
                        hint="`xlate table --family optimizer|loss|schedule|callback` lists what translates")


def _build_source_setup(model, framework, optimizer_spec, loss_spec, schedule_spec):
    cls, args, kwargs = parse_spec(optimizer_spec, framework, "optimizer")
    schedule = None
    if framework == "torch":
        import torch

        optimizer = cls(model.parameters(), *args, **kwargs)
        lcls, largs, lkw = parse_spec(loss_spec, framework, "loss")
        lkw = {k: torch.tensor(v, dtype=torch.float32) if k in ("weight", "pos_weight") else v for k, v in lkw.items()}
        loss = lcls(*largs, **lkw)
        if schedule_spec:
            scls, sargs, skw = parse_spec(schedule_spec, framework, "schedule")
            schedule = scls(optimizer, *sargs, **skw)
        return optimizer, loss, schedule
    import keras

    if schedule_spec:
        scls, sargs, skw = parse_spec(schedule_spec, framework, "schedule")
        schedule = scls(*sargs, **skw)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            kwargs["learning_rate"] = schedule
            schedule = None
    optimizer = cls(*args, **kwargs)
    lcls, largs, lkw = parse_spec(loss_spec, framework, "loss")
    return optimizer, lcls(*largs, **lkw), schedule


def _synthetic_batches(loaded, other, loss, loss_target, steps, batch_size, seed):
    """Seeded inputs from the source's signature (else the target's); targets of the kind the loss
    expects. Returns (batches, the translated loss), the loss translated once to tell its kind."""
    import numpy as np

    from ..errors import BadInputError
    from ..frameworks import flatten_outputs, to_numpy
    from ..load import input_signature
    from ..training.losses import translate_loss

    signature = input_signature(loaded) or input_signature(other)
    if not signature or len(signature) != 1:
        raise BadInputError("cannot make synthetic data for this model (one input with a known shape needed)",
                            hint="pass --data DATA.npz with x and y arrays, or --input-shape for a state_dict")
    shape = (batch_size, *(batch_size if d is None else d for d in signature[0][1:]))
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(steps)]
    model = loaded.model
    if loaded.framework == "torch":
        import torch

        with torch.no_grad():
            out = to_numpy(flatten_outputs(model(torch.from_numpy(xs[0])))[0])
    else:
        out = to_numpy(flatten_outputs(model(xs[0], training=False))[0])
    from ..training.record import translation_of

    # target= matters only for a torch loss (CrossEntropyLoss); the same translation check_training_parity makes
    target_loss = translate_loss(loss, target=loss_target)
    row = translation_of(target_loss).row
    torch_layout = loaded.framework == "torch"  # classes on dim 1, else on the last axis
    if row in ("cross_entropy", "nll") and loss_target == "indices":
        classes = out.shape[1] if torch_layout else out.shape[-1]
        label_shape = out.shape[:1] + out.shape[2:] if torch_layout else out.shape[:-1]
        ys = [rng.integers(0, classes, size=label_shape).astype(np.int64) for _ in range(steps)]
    elif row in ("cross_entropy", "cross_entropy_probabilities", "kl_div"):
        ys = []
        for _ in range(steps):
            e = np.exp(rng.standard_normal(out.shape))
            ys.append((e / e.sum(1 if torch_layout else -1, keepdims=True)).astype(np.float32))
    elif row in ("bce", "bce_with_logits"):
        ys = [(rng.random(out.shape) > 0.5).astype(np.float32) for _ in range(steps)]
    else:
        ys = [rng.standard_normal(out.shape).astype(np.float32) for _ in range(steps)]
    return list(zip(xs, ys)), target_loss


def _file_batches(path, batch_size):
    import numpy as np

    from ..errors import BadInputError
    from ..load import load_inputs

    arrays = load_inputs(path)
    if len(arrays) != 2:
        raise BadInputError(f"--data {path} holds {len(arrays)} array(s); expected two: x and y",
                            hint="numpy.savez('data.npz', x=x, y=y)")
    x, y = arrays
    if len(x) != len(y):
        raise BadInputError(f"--data {path}: x has {len(x)} rows, y {len(y)}")
    return [(np.ascontiguousarray(x[i:i + batch_size]), np.ascontiguousarray(y[i:i + batch_size]))
            for i in range(0, len(x) - batch_size + 1, batch_size)] or [(x, y)]


@click.command("check-train")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--optimizer", "optimizer_spec", required=True, metavar="SPEC",
              help="The source's optimizer in its framework's names, e.g. 'Adam(lr=0.01)' (torch) or "
                   "'Adam(learning_rate=0.01)' (Keras).")
@click.option("--loss", "loss_spec", required=True, metavar="SPEC",
              help="The source's loss, e.g. 'CrossEntropyLoss(label_smoothing=0.1)' or "
                   "'SparseCategoricalCrossentropy(from_logits=True)'.")
@click.option("--schedule", "schedule_spec", metavar="SPEC",
              help="The source's LR scheduler / Keras schedule or callback, e.g. 'StepLR(step_size=2, gamma=0.5)'.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), metavar="DATA.npz",
              help="x and y arrays (source layout) cut into --batch-size batches. Default: seeded synthetic data "
                   "with targets of the kind the loss expects.")
@click.option("--steps", type=click.IntRange(1), default=8, show_default=True, help="Training steps on each side.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(1), help="Epoch length for per-epoch schedules.")
@click.option("--stepping", type=click.Choice(["epoch", "batch"]),
              help="When the torch scheduler is stepped (default: per epoch; OneCycleLR per batch).")
@click.option("--loss-target", type=click.Choice(["indices", "probabilities"]), default="indices",
              show_default=True, help="CrossEntropyLoss targets: class indices or class probabilities.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Bound on the weight and prediction error after every step.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic data.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="REPORT.json",
              help="Write the report (per-step figures, translations, rows used) as JSON.")
@model_options
@handles_errors
def check_train(source, target, optimizer_spec, loss_spec, schedule_spec, data_path, steps, batch_size,
                steps_per_epoch, stepping, loss_target, atol, seed, json_path, model_class, input_shapes,
                input_dtypes, trust, **options):
    """Train SOURCE and TARGET (one PyTorch, one Keras model) for the same steps and compare.

    The optimizer, loss and schedule are given for SOURCE and translated to TARGET's framework
    (exact emulations where the formulas differ). Exit 0 when weights and predictions agree within
    --atol after every step, 1 when they do not, 2 on bad input.
    """
    from ..errors import BadInputError
    from ..load import load_model
    from ..training.parity import check_training_parity

    loaded = [load_model(p, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes, trust=trust,
                         **torch_options(options)) for p in (source, target)]
    for lm in loaded:
        if not lm.convertible:
            raise BadInputError(f"{lm.path} is a {lm.format} artifact: it runs but cannot be trained",
                                hint="check-train needs a .keras/.h5 model or a trainable torch module")
    src, dst = loaded
    if src.framework == dst.framework:
        raise BadInputError(f"both models are {src.framework} models: check-train compares PyTorch with Keras")
    optimizer, loss, schedule = _build_source_setup(src.model, src.framework, optimizer_spec, loss_spec, schedule_spec)
    # synthetic targets need the loss's translation: made once, and reused by the parity run
    batches, target_loss = (_file_batches(data_path, batch_size), None) if data_path else \
        _synthetic_batches(src, dst, loss, loss_target, steps, batch_size, seed)
    report = check_training_parity(src.model, dst.model, optimizer, loss, batches, steps=steps, schedule=schedule,
                                   steps_per_epoch=steps_per_epoch, stepping=stepping, target_loss=target_loss,
                                   loss_target=loss_target, atol=atol)
    print_report(report, f"{source} vs {target}: {steps} training step(s)")
    write_json_report(report, json_path, source=source, target=target)
    if json_path:
        click.echo(f"report written to {json_path}")
    sys.exit(0 if report.passed else 1)
