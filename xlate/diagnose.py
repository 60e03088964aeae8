"""Per-layer localization: where does a converted model start to compute different numbers?

Runs the torch module and the Keras model once on the same inputs, capturing the output of every
layer the conversion record maps (``ConversionRecord.layers``: source name, target name, the
permutation that brings the target's layout back to the source's), and compares them in the
source network's execution order. The first layer past tolerance is where to look.

torch side: forward hooks on the named submodules (a module called several times is matched call
by call with the record's repeated entries). Keras side: a probe ``keras.Model`` from the model's
inputs to the mapped operations' outputs.
"""

from __future__ import annotations

import numpy as np

from .floor import apply_verdict, judge
from .frameworks import flatten_outputs, framework_of, to_numpy
from .layout import perm_at, permute_array
from .parity_inputs import io_spec_of
from .parity_report import LayerParity, compare_arrays
from .record import record_of
from .runners import float32_if_reduced, torch_tensors


def _first_tensor(out):
    leaves = flatten_outputs(out)
    return leaves[0] if leaves else None


def capture_torch(module, names: list[str], inputs: list, *, device: str = "cpu", dtype=None) -> tuple[dict, list]:
    """Run ``module`` on ``inputs`` (numpy arrays) and return ({name: [output per call]}, the names
    in the order they first ran)."""
    import torch

    modules = dict(module.named_modules())
    outputs: dict[str, list] = {n: [] for n in names}
    order: list[str] = []
    handles = []

    def hook_for(name):
        def hook(_mod, _inp, out):
            t = _first_tensor(out)
            if isinstance(t, torch.Tensor):
                reduced = t.is_floating_point() and t.dtype not in (torch.float32, torch.float64)
                # a copy: the network may still change the tensor in place (``x += residual``, ReLU(inplace=True))
                outputs[name].append(to_numpy(t.float() if reduced else t).copy())
                if name not in order:
                    order.append(name)

        return hook

    for name in dict.fromkeys(names):
        if name in modules:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            module(*torch_tensors(inputs, device, dtype))
    finally:
        for h in handles:
            h.remove()
    return outputs, order


def _op_output(op):
    try:
        out = op.output
    except (AttributeError, ValueError):  # shared layer: several call sites, take the first
        nodes = getattr(op, "_inbound_nodes", [])
        out = nodes[0].output_tensors if nodes else None
    return _first_tensor(out)


def capture_keras(model, names: list[str], inputs: list, *, training: bool) -> tuple[dict, list]:
    """Run a functional Keras model on ``inputs`` and return ({operation name: [output]}, the mapped
    names in network order)."""
    import keras

    by_name = {}
    for op in model.operations:
        by_name.setdefault(op.name, op)  # the first operation of a name, as the scan used to find
    ops, tensors = [], []
    for name in dict.fromkeys(names):
        op = by_name.get(name)
        t = None if op is None else _op_output(op)
        if t is not None:
            ops.append(name)
            tensors.append(t)
    if not tensors:
        return {n: [] for n in names}, []
    probe = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0], tensors)
    x = inputs[0] if len(inputs) == 1 else list(inputs)
    outs = probe(x, training=training)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    captured = {n: [] for n in names}
    for name, o in zip(ops, outs):
        a = to_numpy(o)
        captured[name].append(float32_if_reduced(a))
    captured_names = set(ops)
    order = [op.name for op in model.operations if op.name in captured_names]
    return captured, order


def localize(report, source, target, inputs, *, atol: float, rtol: float, training: bool,
             device: str = "cpu", torch_dtype=None, record=None, spec=None, floor_factor: float | None = None,
             reference=None, target_run=None, dtype: str = "float32") -> None:
    """Fill ``report.per_layer`` (network order) and ``report.first_divergence``.

    ``inputs``: one sample (list of arrays) in the layout of the I/O spec's source framework.
    ``record``/``spec``: the conversion record and I/O spec (default: read from the models).
    ``floor_factor``, ``reference`` and ``target_run`` (``xlate.floor.ReferenceRun`` of the source
    and of the target): a layer outside atol/rtol still agrees when it is within floor_factor x the
    layer's own rounding (the gate's rule), so the first diverging layer is the first to depart
    beyond rounding, not the first deep one where rounding adds up.
    """
    record = record or record_of(target) or record_of(source)
    report.per_layer = []
    report.first_divergence = None
    if record is None or not record.layers:
        why = "no conversion record" if record is None else f"the {record.path} path recorded no layer mapping"
        report.message = _join(report.message, f"per-layer: nothing to align ({why})")
        return
    torch_model = source if framework_of(source) == "torch" else target
    keras_model = target if torch_model is source else source
    torch_is_source = record.direction == "torch2keras"

    spec = spec or io_spec_of(target) or io_spec_of(source)
    src_is_torch = spec is None or spec.source == "torch"
    in_perms = spec.input_perms if spec is not None else ()
    torch_in = [a if src_is_torch else permute_array(a, perm_at(in_perms, i)) for i, a in enumerate(inputs)]
    keras_in = [permute_array(a, perm_at(in_perms, i)) if src_is_torch else a for i, a in enumerate(inputs)]

    torch_names = [lr.source if torch_is_source else lr.target for lr in record.layers]
    keras_names = [lr.target if torch_is_source else lr.source for lr in record.layers]
    t_out, t_order = capture_torch(torch_model, torch_names, torch_in, device=device, dtype=torch_dtype)
    k_out, k_order = capture_keras(keras_model, keras_names, keras_in, training=training)

    rows = []
    pairs = []  # per row: (source output, aligned target output, {framework: (name, call index)}, lr) or None
    seen: dict[str, int] = {}
    for lr in record.layers:
        call = seen.get(lr.source, 0)
        seen[lr.source] = call + 1
        t_name, k_name = (lr.source, lr.target) if torch_is_source else (lr.target, lr.source)
        t_calls, k_calls = t_out.get(t_name, []), k_out.get(k_name, [])
        if call and not torch_is_source:
            report.message = _join(report.message, f"per-layer: shared Keras layer {lr.source!r}: only its first "
                                                   "call is compared")
            continue
        t_idx, k_idx = (call if torch_is_source else 0), 0
        label = lr.source if call == 0 else f"{lr.source} (call {call + 1})"
        if t_idx >= len(t_calls) or k_idx >= len(k_calls):
            missing = t_name if t_idx >= len(t_calls) else k_name
            side = "torch" if t_idx >= len(t_calls) else "keras"
            rows.append(LayerParity(label, lr.source, lr.target, float("inf"), float("inf"), False,
                                    note=f"{side} layer {missing!r} not found or did not run", shape=[]))
            pairs.append(None)
            continue
        src, tgt = (t_calls[t_idx], k_calls[k_idx]) if torch_is_source else (k_calls[k_idx], t_calls[t_idx])
        aligned = _align(tgt, lr, torch_is_source)
        o = compare_arrays(label, src, aligned, atol, rtol)
        rows.append(LayerParity(label, lr.source, lr.target, o.max_abs_err, o.max_rel_err, o.passed, note=o.note,
                                shape=o.shape, row=lr.row, rule=o.rule, reason=o.reason,
                                tolerance_passed=o.tolerance_passed))
        pairs.append(None if o.note else (src, aligned, {"torch": (t_name, t_idx), "keras": (k_name, k_idx)}, lr))
    if floor_factor is not None and reference is not None and any(not r.passed for r in rows):
        runs = {"torch": (torch_names, torch_in), "keras": (keras_names, keras_in)}
        note = _judge_by_floor(rows, pairs, reference, target_run, runs, atol=atol, rtol=rtol, factor=floor_factor,
                               dtype=dtype, device=device, training=training, torch_is_source=torch_is_source)
        if note:
            report.message = _join(report.message, f"per-layer: {note}")

    source_order = t_order if torch_is_source else k_order
    rank = {name: i for i, name in enumerate(source_order)}
    # stable sort: execution order of the source network; repeated calls keep record order
    rows.sort(key=lambda r: rank.get(r.source_name, len(rank)))
    report.per_layer = rows
    report.first_divergence = next((r for r in rows if not r.passed), None)
    if report.first_divergence is None and not report.passed:
        report.message = _join(report.message, "per-layer: every mapped layer agrees; the difference arises after "
                                               "the last mapped layer (unmapped glue or output layout)")


def _align(tgt, lr, torch_is_source: bool):
    """A target layer's output in the source's layout and element order."""
    aligned = permute_array(tgt, lr.output_perm) if lr.output_perm and tgt.ndim == len(lr.output_perm) else tgt
    if lr.feature_order is not None and aligned.shape[-1:] == (len(lr.feature_order),):
        # a channels-last flatten keeps the target's element order: put it back in the source's
        order = np.argsort(lr.feature_order) if torch_is_source else np.asarray(lr.feature_order)
        aligned = aligned[..., order]
    return aligned


def _capture_at_reference(run, names, inputs, *, device, training):
    """({name: [outputs]} of ``run``'s model at the reference precision, or None), note."""
    try:
        with run.prepared() as ready:
            if ready is None:
                return None, run.note
            model, ref_dtype, _ = ready
            if run.framework == "torch":
                return capture_torch(model, names, inputs, device=device, dtype=ref_dtype)[0], ""
            return capture_keras(model, names, inputs, training=training)[0], ""
    except Exception as e:  # noqa: BLE001 - no reference for the layers: atol/rtol decide, said
        return None, f"no {run.precision} reference of the {run.role}'s layers ({type(e).__name__})"


def _judge_by_floor(rows, pairs, reference, target_run, runs, *, atol, rtol, factor, dtype, device, training,
                    torch_is_source: bool) -> str:
    """Re-judge the layers outside atol/rtol against the source's layers at the reference
    precision, then those still failing against the target's own rounding too (one more run of
    each, captured the same way). Returns a note when there is no reference."""
    src_fw, tgt_fw = ("torch", "keras") if torch_is_source else ("keras", "torch")
    captured, note = _capture_at_reference(reference, *runs[src_fw], device=device, training=training)
    if captured is None:
        return note
    verdicts = {}
    for i, (row, pair) in enumerate(zip(rows, pairs)):
        if pair is not None and not row.passed:
            src, aligned, names, _ = pair
            ref = _call(captured, *names[src_fw], like=src)
            verdicts[i] = judge([(src, aligned, ref)], atol=atol, rtol=rtol, factor=factor, dtype=dtype)
    if target_run is not None and any(v.retry for v in verdicts.values()):
        own, note = _capture_at_reference(target_run, *runs[tgt_fw], device=device, training=training)
        for i, verdict in list(verdicts.items()):
            if own is not None and verdict.retry:
                src, aligned, names, lr = pairs[i]
                ref, mine = _call(captured, *names[src_fw], like=src), _call(own, *names[tgt_fw])
                mine = None if mine is None else _align(mine, lr, torch_is_source)
                verdicts[i] = judge([(src, aligned, ref, mine if mine is not None and mine.shape == src.shape
                                      else None)], atol=atol, rtol=rtol, factor=factor, dtype=dtype)
    for i, verdict in verdicts.items():
        apply_verdict(rows[i], verdict)
    return note


def _call(captured, name, index, like=None):
    calls = captured.get(name, [])
    out = calls[index] if index < len(calls) else None
    return None if out is None or (like is not None and out.shape != like.shape) else out


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b
