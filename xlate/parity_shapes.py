"""The parity gate at more than one shape, so that a dynamic size is tested, not assumed.

``check_parity_shapes`` calls ``parity.check_parity`` once at the example's shape and once per
other shape: every input size the converted model reports dynamic (the conversion record's
``dims``; for a Keras source, its ``None`` sizes) moved down, then up, within its bounds. The
reports merge into one: it passes only when every shape passes, and its message lists the shapes.
A shape the *source* model itself rejects is outside what it accepts: it is skipped and named.

A thin layer over parity.py; it owns the choice of shapes, not the comparison.
"""

from __future__ import annotations

import dataclasses

from .floor import FAILED, FLOOR, TOLERANCE
from .frameworks import framework_of
from .parity import check_parity
from .parity_inputs import concrete_shape, io_spec_of, make_inputs
from .parity_report import OutputParity

#: the largest step a size moves by (as the fast trace's variations: a power of two)
MAX_STEP = 32


def _step(size: int) -> int:
    return max(1, min(MAX_STEP, size & -size, size // 2))


def _fixed_in_keras(keras_model, spec) -> set:
    """(input, source axis) pairs the Keras model's own inputs fix (a file written with some sizes
    fixed, such as a TFLite file of a recurrent model), for a spec whose source is torch."""
    fixed = set()
    inputs = getattr(keras_model, "inputs", None) or []
    if spec.source != "torch" or len(inputs) != len(spec.inputs):
        return fixed
    for i, t in enumerate(inputs):
        perm = spec.input_perms[i] if spec.input_perms and i < len(spec.input_perms) else None
        for k, d in enumerate(tuple(t.shape)):
            if d is not None:
                fixed.add((i, perm[k] if perm else k))
    return fixed


def _dynamic_axes(spec, fixed=frozenset()) -> list[list[dict]]:
    """Per input: {axis, size, low, high, group} for each dynamic axis (not in ``fixed``)."""
    dims = (spec.extras or {}).get("dims")
    out = [[] for _ in spec.inputs]
    if dims:
        for d in dims:
            if d.get("dynamic") and d["index"] < len(out) and (d["index"], d["axis"]) not in fixed:
                out[d["index"]].append({"axis": d["axis"], "size": d["size"], "low": d.get("low") or 1,
                                        "high": d.get("high"), "group": d.get("symbol")})
        return out
    for i, s in enumerate(spec.inputs):
        example = s.example or concrete_shape(s.shape)
        for axis, d in enumerate(s.shape):
            if d is None:
                # free sizes of equal example size at the same axis move together (ids and masks)
                out[i].append({"axis": axis, "size": example[axis], "low": 1, "high": None,
                               "group": ("batch",) if axis == 0 else (axis, example[axis])})
    return out


def other_sizes(size: int, low: int, high, k: int = 0) -> tuple[int | None, int | None]:
    """(smaller, larger) than ``size`` within [low, high] (None where there is none). The smaller
    one is odd where it can be (a size worked out from the example's parity shows there); the
    larger size of the k-th dynamic size steps by (1 + k % 2) steps, so that equal sizes (a square
    image) are checked unequal too."""
    step = _step(size)
    smaller = size - step // 2 - 1 if size - step // 2 - 1 >= max(low, 1) else size - 1
    larger = size + step * (1 + k % 2)
    if high is not None and larger > high:
        larger = high if high > size else None
    return (smaller if smaller >= max(low, 1) else None), larger


def shapes_to_check(spec, fixed=frozenset()) -> list[list[tuple]]:
    """The other input shapes the gate runs: every dynamic size smaller, then every one larger."""
    axes = _dynamic_axes(spec, fixed)
    groups: dict = {}
    for per_input in axes:
        for a in per_input:
            groups.setdefault(a["group"], a)
    chosen = {}
    for k, (group, a) in enumerate(groups.items()):
        chosen[group] = other_sizes(a["size"], a["low"], a["high"], k)
    out = []
    for which in (0, 1):
        if not any(sizes[which] is not None for sizes in chosen.values()):
            continue
        shapes = []
        for s, per_input in zip(spec.inputs, axes):
            shape = list(s.example or concrete_shape(s.shape))
            for a in per_input:
                size = chosen[a["group"]][which]
                if size is not None:
                    shape[a["axis"]] = size
            shapes.append(tuple(shape))
        out.append(shapes)
    return out


def check_parity_shapes(source, target, *, atol=1e-5, rtol=1e-4, path=None, samples=4, seed=0, **options):
    """``check_parity`` at the example's shape and at the other shapes of ``shapes_to_check``."""
    report = check_parity(source, target, None, atol=atol, rtol=rtol, path=path, samples=samples, seed=seed,
                          **options)
    spec = io_spec_of(target) or io_spec_of(source)
    if spec is None or not spec.inputs:
        return report
    checked, skipped, fixed = [], [], []
    keras_model = target if framework_of(target) == "keras" else source
    for k, shapes in enumerate(shapes_to_check(spec, _fixed_in_keras(keras_model, spec))):
        specs = [dataclasses.replace(s, shape=shape, example=shape) for s, shape in zip(spec.inputs, shapes)]
        inputs = make_inputs(specs, samples=1, seed=seed + 101 + k)
        label = " ".join("x".join(map(str, s)) for s in shapes)
        try:
            other = check_parity(source, target, inputs, atol=atol, rtol=rtol, path=path, seed=seed + 101 + k,
                                 **options)
        except Exception as e:  # noqa: BLE001 - the source rejecting the shape is not a failure
            if _fixed_by_traced_code(e):
                fixed.append(label)
                continue
            if _source_rejects(source, inputs[0], spec):
                skipped.append(label)
                continue
            other = _failed(report, f"the converted model fails at {label}: {type(e).__name__}: {e}")
        _merge_into(report, other)
        checked.append(label)
    notes = [report.message] if report.message else []
    if checked:
        notes.append(f"also checked at input shape(s) {', '.join(checked)}")
    if skipped:
        notes.append(f"the source model rejects {', '.join(skipped)}: not checked there")
    if fixed:
        notes.append(f"the converted code's traced classes fix the sizes {', '.join(fixed)} differ from: not checked "
                     "there")
    report.message = "; ".join(notes)
    return report


def _fixed_by_traced_code(error: BaseException) -> bool:
    """Whether the converted torch code refused a size its traced classes fix (and say they fix)."""
    from .keras2torch.traced.statements import FIXED_SIZE_MESSAGE

    return isinstance(error, ValueError) and FIXED_SIZE_MESSAGE in str(error)


def _source_rejects(source, arrays, spec) -> bool:
    """Whether the source model itself raises on these inputs (given in the spec's source layout)."""
    try:
        if framework_of(source) == "torch":
            import torch

            state = {k: v.clone() for k, v in source.state_dict().items()}
            try:
                with torch.no_grad():
                    source(*[torch.from_numpy(a) for a in arrays])
            finally:
                source.load_state_dict(state)
        else:
            source(arrays[0] if len(arrays) == 1 else list(arrays))
    except Exception:  # noqa: BLE001 - any failure of the source means: not a shape it takes
        return True
    return False


def _failed(report, note: str):
    per_output = [OutputParity(o.name, o.shape, float("inf"), float("inf"), o.total, o.total, False, note)
                  for o in report.per_output]
    return dataclasses.replace(report, passed=False, max_abs_err=float("inf"), max_rel_err=float("inf"),
                               per_output=per_output, samples=0, message=note)


def _max_known(a, b):
    known = [v for v in (a, b) if v is not None]
    return max(known) if known else None


def _merge_into(report, other) -> None:
    merged = []
    for a, b in zip(report.per_output, other.per_output):
        passed = a.passed and b.passed
        # the rule that decided: a failure anywhere fails; the rounding floor if any shape needed it
        rule = FAILED if not passed else FLOOR if FLOOR in (a.rule, b.rule) else TOLERANCE
        merged.append(OutputParity(
            name=a.name, shape=a.shape, max_abs_err=max(a.max_abs_err, b.max_abs_err),
            max_rel_err=max(a.max_rel_err, b.max_rel_err), mismatched=a.mismatched + b.mismatched,
            total=a.total + b.total, passed=passed,
            note="; ".join(n for n in (a.note, b.note) if n), rule=rule,
            floor=_max_known(a.floor, b.floor), target_vs_ref64=_max_known(a.target_vs_ref64, b.target_vs_ref64),
            reason="; ".join(dict.fromkeys(r for r in (a.reason, b.reason) if r)),
            outside_tol=a.outside_tol + b.outside_tol, tolerance_passed=a.tolerance_passed and b.tolerance_passed,
            target_floor=_max_known(a.target_floor, b.target_floor)))
    if len(report.per_output) != len(other.per_output):
        report.passed = False
    report.per_output = merged
    report.passed = report.passed and other.passed
    report.max_abs_err = max(report.max_abs_err, other.max_abs_err)
    report.max_rel_err = max(report.max_rel_err, other.max_rel_err)
    report.samples += other.samples
    if other.message and other.message not in report.message:
        report.message = "; ".join(m for m in (report.message, other.message) if m)

