"""``xlate check-train SOURCE TARGET``: do the two models train the same?

Loads SOURCE and TARGET (one PyTorch, one Keras model, e.g. a model and its conversion), builds the
source's optimizer, loss and schedule from the given specs (in the source framework's own names),
translates them with xlate (``translate_training``: the torch loop's --clip-grad-norm /
--clip-grad-value / --ema / --grad-accum-steps travel with the optimizer) and runs k identical
training steps on both sides (``xlate.check_training_parity``). ``--recipe hf|timm`` runs one
of the recipes of ``xlate.training.recipes`` instead (both directions by default, on the built-in
models or on SOURCE and TARGET), with gradient clipping required to be active on some step.
Prints the per-step table; exit 0 when the weights, EMA weights and predictions agree within
--atol after every step, 1 when not, 2 on bad input.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import click

from ._common import model_options, print_report, torch_options, write_json_report
from ._errors import handles_errors

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


def _run_recipes(recipe, direction, loaded, steps, seed, atol, json_path) -> bool:
    """Run ``recipe`` in the chosen direction(s); print each report; True when all pass."""
    from ..training.recipes import build_recipe

    directions = ("torch2keras", "keras2torch") if direction == "both" else (direction,)
    models, batches = {}, None
    if loaded:
        src, dst = loaded
        torch_lm, keras_lm = (src, dst) if src.framework == "torch" else (dst, src)
        models = {"torch_model": torch_lm.model, "keras_model": keras_lm.model}
        batches = _recipe_batches(torch_lm, keras_lm, steps, seed)
        if direction == "both":
            directions = ("torch2keras" if src.framework == "torch" else "keras2torch",)
    reports = []
    for d in directions:
        report = build_recipe(recipe, d, steps=steps, seed=seed, batches=batches, **models).run(atol=atol)
        print_report(report, f"recipe {recipe} ({d}): {steps} training step(s)")
        reports.append(report)
    if json_path:
        import json
        import os

        text = json.dumps({"recipe": recipe, "passed": all(r.passed for r in reports),
                           "runs": [json.loads(r.to_json()) for r in reports]}, indent=2)
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(json_path).with_name(f".{Path(json_path).name}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, json_path)
        click.echo(f"report written to {json_path}")
    return all(r.passed for r in reports)


def _recipe_batches(torch_loaded, keras_loaded, steps, seed):
    """Seeded inputs for a given pair and class-index labels for its (N, classes) logits."""
    import numpy as np
    import torch

    from ..errors import BadInputError
    from ..load import input_signature

    signature = input_signature(torch_loaded) or input_signature(keras_loaded)
    if not signature or len(signature) != 1:
        raise BadInputError("the recipe needs a model with one input of known shape", hint="pass --input-shape")
    rng = np.random.default_rng(seed)
    shape = tuple(8 if d is None else d for d in signature[0])
    xs = [(rng.standard_normal(shape) * 3.0).astype(np.float32) for _ in range(steps)]
    with torch.no_grad():
        out = torch_loaded.model(torch.from_numpy(xs[0]))
    if out.ndim != 2:
        raise BadInputError(f"the recipes train a classifier: the model returns {tuple(out.shape)}, not (N, classes)")
    return [(x, rng.integers(0, out.shape[1], size=shape[0]).astype(np.int64)) for x in xs]


def _loop_settings(framework, model, clip_grad_norm, clip_grad_value, ema_decay, grad_accum_steps) -> dict:
    """The torch loop's settings from the command line (a Keras source carries them in its optimizer)."""
    from ..errors import BadInputError

    given = {k: v for k, v in (("clip_grad_norm", clip_grad_norm), ("clip_grad_value", clip_grad_value),
                               ("ema", ema_decay), ("grad_accum_steps", grad_accum_steps)) if v is not None}
    if given and framework != "torch":
        raise BadInputError(f"--{', --'.join(k.replace('_', '-') for k in given)} describe a torch loop: for a Keras "
                            "source put them in the optimizer spec (clipnorm=, global_clipnorm=, clipvalue=, use_ema=, "
                            "gradient_accumulation_steps=)")
    if "ema" in given:
        import torch

        given["ema"] = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay))
    return given


@click.command("check-train")
@click.argument("source", type=click.Path(path_type=Path), required=False)
@click.argument("target", type=click.Path(path_type=Path), required=False)
@click.option("--recipe", type=click.Choice(["hf", "timm"]),
              help="Run a recipe instead of --optimizer/--loss/--schedule: hf (AdamW with no-decay groups, linear "
                   "warm-up then cosine, clip 1.0, label smoothing) or timm (SGD Nesterov, cosine warm restarts, EMA, "
                   "accumulation, clipping). Without SOURCE/TARGET on built-in models.")
@click.option("--direction", type=click.Choice(["torch2keras", "keras2torch", "both"]), default="both",
              show_default=True, help="With --recipe: which framework is the source.")
@click.option("--clip-grad-norm", type=click.FloatRange(min=0, min_open=True), metavar="C",
              help="The torch loop calls clip_grad_norm_(params, C) before each step.")
@click.option("--clip-grad-value", type=click.FloatRange(min=0, min_open=True), metavar="V",
              help="The torch loop calls clip_grad_value_(params, V) before each step.")
@click.option("--ema", "ema_decay", type=click.FloatRange(0, 1), metavar="DECAY",
              help="The torch loop keeps AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(DECAY)).")
@click.option("--grad-accum-steps", type=click.IntRange(2), metavar="K",
              help="The torch loop accumulates K batches per optimizer step.")
@click.option("--optimizer", "optimizer_spec", metavar="SPEC",
              help="The source's optimizer in its framework's names, e.g. 'Adam(lr=0.01)' (torch) or "
                   "'Adam(learning_rate=0.01)' (Keras).")
@click.option("--loss", "loss_spec", metavar="SPEC",
              help="The source's loss, e.g. 'CrossEntropyLoss(label_smoothing=0.1)' or "
                   "'SparseCategoricalCrossentropy(from_logits=True)'.")
@click.option("--schedule", "schedule_spec", metavar="SPEC",
              help="The source's LR scheduler / Keras schedule or callback, e.g. 'StepLR(step_size=2, gamma=0.5)'.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), metavar="DATA.npz",
              help="x and y arrays (source layout) cut into --batch-size batches. Default: seeded synthetic data "
                   "with targets of the kind the loss expects.")
@click.option("--steps", type=click.IntRange(1), help="Training steps on each side (default 8; 12 for --recipe).")
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
def check_train(source, target, recipe, direction, clip_grad_norm, clip_grad_value, ema_decay, grad_accum_steps,
                optimizer_spec, loss_spec, schedule_spec, data_path, steps, batch_size, steps_per_epoch, stepping,
                loss_target, atol, seed, json_path, model_class, input_shapes, input_dtypes, trust, **options):
    """Train SOURCE and TARGET (one PyTorch, one Keras model) for the same steps and compare.

    The optimizer, loss and schedule are given for SOURCE and translated to TARGET's framework
    (exact emulations where the formulas differ), or --recipe runs a whole recipe. Exit 0 when
    weights and predictions agree within --atol after every step, 1 when they do not, 2 on bad
    input.
    """
    from ..errors import BadInputError
    from ..load import load_model
    from ..training.parity import check_training_parity

    if (source is None) != (target is None):
        raise BadInputError("pass both SOURCE and TARGET, or neither (with --recipe)")
    if recipe is None and (source is None or not optimizer_spec or not loss_spec):
        raise BadInputError("check-train needs SOURCE TARGET --optimizer SPEC --loss SPEC, or --recipe hf|timm")
    loaded = [load_model(p, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes, trust=trust,
                         **torch_options(options)) for p in (source, target)] if source is not None else []
    for lm in loaded:
        if not lm.convertible:
            raise BadInputError(f"{lm.path} is a {lm.format} artifact: it runs but cannot be trained",
                                hint="check-train needs a .keras/.h5 model or a trainable torch module")
    if loaded and loaded[0].framework == loaded[1].framework:
        raise BadInputError(f"both models are {loaded[0].framework} models: check-train compares PyTorch with Keras")
    if recipe is not None:
        sys.exit(0 if _run_recipes(recipe, direction, loaded, steps or 12, seed, atol, json_path) else 1)
    src, dst = loaded
    steps = steps or 8
    loop = _loop_settings(src.framework, src.model, clip_grad_norm, clip_grad_value, ema_decay, grad_accum_steps)
    optimizer, loss, schedule = _build_source_setup(src.model, src.framework, optimizer_spec, loss_spec, schedule_spec)
    # synthetic targets need the loss's translation: made once, and reused by the parity run
    batches, target_loss = (_file_batches(data_path, batch_size), None) if data_path else \
        _synthetic_batches(src, dst, loss, loss_target, steps, batch_size, seed)
    report = check_training_parity(src.model, dst.model, optimizer, loss, batches, steps=steps, schedule=schedule,
                                   steps_per_epoch=steps_per_epoch, stepping=stepping, target_loss=target_loss,
                                   loss_target=loss_target, atol=atol, **loop)
    print_report(report, f"{source} vs {target}: {steps} training step(s)")
    write_json_report(report, json_path, source=source, target=target)
    if json_path:
        click.echo(f"report written to {json_path}")
    sys.exit(0 if report.passed else 1)
