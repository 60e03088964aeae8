"""Emit stage: walk the source graph and build a Keras functional model, node by node.

Like torch.fx's Interpreter, the emitter runs the graph once, but over Keras symbolic tensors:
each node is dispatched to the converter named by its table row's hook. Converters create
real Keras layers (named after the torch module they come from) and queue weights for the
port stage; the layout plan (``plan.py``) decides where a transpose is really needed.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInputError, ConverterFailure, UnsupportedOpError, XlateError, one_line
from ..frameworks import numpy_to_torch, torch_to_numpy
from ..progress import report as report_progress
from ..table import Row, table
from . import plan, ported
from .registry import INTERNAL, get_converter
from .source_graph import Ref, SourceGraph, SourceNode, TensorMeta, has_sym, refs_in
from .values import Const, DynamicShapeError, Value

# creation ops whose tensor operand gives only a dtype/device (and, for *_like, a shape)
SHAPE_TEMPLATE_CREATION = {"new_zeros", "new_ones", "new_full", "new_empty", "zeros_like", "ones_like", "full_like",
                           "empty_like"}


@dataclass
class WeightAssignment:
    layer: object
    values: dict  # keras variable name (path suffix) -> array or ported.Piece (converted when used)
    source: str
    # (torch paths, keras variable names, transform, params) for whole torch tensors ported as is
    pairs: list = field(default_factory=list)
    # variables created from their ported value: name -> (initializer attribute or None, the
    # layer's own initializer, the ported.FromTorch used); see ported.prepare
    replaced: dict = field(default_factory=dict)


class Emitter:
    def __init__(self, graph: SourceGraph, *, io_layout: str = "source", batch_size: int | None = None,
                 model_name: str = "xlate_converted"):
        import keras

        from . import converters  # noqa: F401 - importing the package registers every converter
        self.keras = keras
        self.graph = graph
        self.model_name = model_name
        self.io_layout = io_layout
        self.batch_size = batch_size
        self.table = table()
        self.env: dict[str, object] = {}
        self.assignments: list[WeightAssignment] = []
        self.rows_used: Counter = Counter()
        self.notes: list[str] = []
        self.layer_names: set[str] = set()
        self.layer_cache: dict = {}
        self._pinned: list = []  # objects whose id() is part of a layer_cache key (weight_key)
        # torch module path -> one (value, keras tensor) per call of the module, in call order
        self.module_outputs: dict[str, list] = {}
        self._previous_stack: tuple = ()
        self.node: SourceNode | None = None
        self.inputs = []
        self.input_perms = []
        self.output_perms = []
        self.anchor = None

    # --- values ------------------------------------------------------------------------------

    def value(self, arg):
        """Resolve an argument: Refs to their Value/Const/python value, lists element-wise."""
        if isinstance(arg, Ref):
            return self.env[arg.name]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        return arg

    def arg(self, name: str, default=None):
        return self.value(self.node.args.get(name, default))

    def keras_tensor(self, v, perm=None):
        """The Keras tensor for a value in layout ``perm`` (default: its own), transposing once."""
        if isinstance(v, Const):
            return self.const_tensor(v, perm)
        if not isinstance(v, Value):
            raise BadInputError(f"expected a tensor, got {v!r}")
        if v.feature_order is not None and perm is not None:
            return self.keras_tensor(self.materialize(v), perm)
        perm = v.perm if perm is None else tuple(perm)
        if perm not in v.tensors:
            base = v.tensors[v.perm]
            rel = plan.relative(v.perm, perm)
            v.tensors[perm] = self.keras.ops.transpose(base, rel)
        return v.tensors[perm]

    def materialize(self, v) -> Value:
        """The value as a plain tensor Value: constants become Constant/Parameter layers, and a
        feature-permuted flat value is rebuilt in torch feature order. Other values pass as they are."""
        if isinstance(v, Const):
            rank = v.array.ndim
            meta = TensorMeta(tuple(v.array.shape), str(v.array.dtype))
            return Value(meta, plan.identity(rank), {plan.identity(rank): self.const_tensor(v, None)})
        if not isinstance(v, Value) or v.feature_order is None:
            return v
        if v.unflattened is None:
            raise BadInputError("internal: flattened value without its source")
        return v.unflattened()

    def const_tensor(self, c: Const, perm=None, *, name_hint: str = ""):
        from ..keras_layers import Constant, Parameter

        key = tuple(perm) if perm else None
        if key in c.tensors:
            return c.tensors[key]
        array = plan.permute_array(c.array, perm)
        dtype = str(array.dtype)
        hint = name_hint or (c.path if c.path else f"{self.node.module_path}.const" if self.node else "const")
        name = self.unique_name(hint)
        init = ported.FromTorch(array, f"{c.path or hint} -> {name}/value")
        layer = (Parameter if c.trainable else Constant)(array.shape, dtype, name=name, initializer=init)
        out = layer(self.anchor)
        unchanged = perm is None or plan.is_identity(perm)
        pairs = [((c.path,), ("value",), "identity", {})] if c.path and unchanged else []
        self.assign(layer, {"value": array}, c.path or hint, pairs=pairs, replaced={"value": (None, None, init)})
        c.tensors[key] = out
        return out

    def weight_key(self, v):
        """The key naming one weight when layers are shared (a module called twice shares its
        Keras layer): its torch path, else the object's identity, the object kept alive here so
        that no later object can get its id; None for no weight."""
        if v is None:
            return None
        if getattr(v, "path", None):
            return v.path
        self._pinned.append(v)
        return ("object", id(v))

    def set(self, node: SourceNode, result) -> None:
        self.env[node.name] = result
        if isinstance(result, tuple) and result and isinstance(result[0], Value):
            result = result[0]  # a module returning (output, state...) is aligned on its output
        if not isinstance(result, Value) or not node.stack:
            return
        # a module's output is the last value computed inside it; entering it again is a new call
        paths = [p for p, _ in node.stack]
        for path in paths:
            calls = self.module_outputs.setdefault(path, [])
            if not calls or path not in self._previous_stack:
                calls.append(None)
            calls[-1] = (result, result.tensor)
        self._previous_stack = tuple(paths)

    def new_value(self, tensor, perm=None, meta: TensorMeta | None = None) -> Value:
        """Wrap a Keras tensor as the node's value, cast to the dtype torch gives that node."""
        meta = meta if meta is not None else self.node.meta
        rank = len(tensor.shape)
        perm = tuple(perm) if perm is not None else plan.identity(rank)
        if isinstance(meta, TensorMeta) and str(tensor.dtype) != meta.dtype:
            tensor = self.keras.ops.cast(tensor, meta.dtype)
        return Value(meta, perm, {perm: tensor})

    # --- layers ------------------------------------------------------------------------------

    def unique_name(self, hint: str) -> str:
        """A unique Keras layer name from a torch module path: "layer1.0.conv1" -> "layer1_0_conv1"
        (Keras' torch backend keys parameters by layer name, where dots are not allowed)."""
        base = re.sub(r"[^0-9A-Za-z_\-]", "_", hint or "op").strip("_") or "op"
        name, i = base, 1
        while name in self.layer_names:
            i += 1
            name = f"{base}_{i}"
        self.layer_names.add(name)
        return name

    def layer_name(self, suffix: str = "") -> str:
        """A name for a layer made for the current node: its torch module path.

        A node called at the top level of the traced module (no module path) is named ``op_<fx node
        name>``: a bare fx name ("matmul", "conv2d") is also the name Keras gives automatically to
        its first op or layer of that kind, and two layers of one name break ``keras.Model``."""
        path = self.node.module_path or f"op_{self.node.name}"
        return self.unique_name(f"{path}.{suffix}" if suffix else path)

    def assign(self, layer, values: dict, source: str = "", *, pairs=(), replaced=None) -> None:
        """Queue a layer's weights for the port stage; ``pairs`` records the whole torch tensors
        ported as they are (see WeightAssignment). Called before the layer is built, its variables
        are created from the ported values themselves (ported.prepare), not from random draws."""
        source = source or self.node.module_path
        replaced = replaced if replaced is not None else ported.prepare(layer, values, source)
        self.assignments.append(WeightAssignment(layer, values, source, list(pairs), replaced))

    def used(self, row: Row) -> None:
        self.rows_used[row.id] += 1

    def where(self) -> str:
        return self.node.module_path or "<root>"

    def unsupported(self, what: str) -> UnsupportedOpError:
        """The error to raise for something the current node does that cannot be converted."""
        return UnsupportedOpError([(what, self.where())], direction="torch2keras")

    # --- the walk ----------------------------------------------------------------------------

    def _live_nodes(self) -> set[str]:
        """Names of the nodes the outputs depend on (torch.export keeps some dead code, e.g. the
        batch aranges of Hugging Face mask builders)."""
        g = self.graph
        live = set()
        stack = [r.name for r in refs_in(g.outputs)]
        while stack:
            name = stack.pop()
            if name in live:
                continue
            live.add(name)
            node = g.node(name)
            stack.extend(r.name for r in refs_in(node.args))
        return live

    def run(self):
        keras = self.keras
        g = self.graph
        self.live = self._live_nodes()
        unsupported = self._unsupported_ops()
        if unsupported:
            raise UnsupportedOpError(unsupported, direction="torch2keras")
        for i, name in enumerate(g.inputs):
            self._make_input(i, g.node(name))
        self.anchor = self.inputs[0]
        total = sum(n.op not in ("input", "param") and n.name in self.live for n in g.nodes)
        done = 0
        for node in g.nodes:
            self.node = node
            if node.op == "input" or node.name not in self.live:
                continue
            if node.op == "param":
                path, array, trainable = g.params[node.name]
                self.env[node.name] = Const(array, path, trainable)
                continue
            try:
                self._run_node(node)
            except (XlateError, DynamicShapeError):
                raise
            except Exception as e:  # a converter bug: one line naming the op and module, never a foreign error
                op = node.module_type if node.op == "module" else node.target
                raise ConverterFailure(op, node.module_path or "<root>", e, direction="torch2keras") from e
            done += 1
            report_progress(done, total, "layers")
        outputs = []
        for out in g.outputs:
            v = self.value(out)
            outputs.append(self._output_tensor(v))
        from ..frameworks import deep_graphs

        with deep_graphs():
            model = keras.Model(self.inputs if len(self.inputs) != 1 else self.inputs[0],
                                outputs if len(outputs) != 1 else outputs[0], name=self.model_name)
        return model

    def _run_node(self, node: SourceNode) -> None:
        inputs = [self.env.get(r.name) for r in refs_in(node.args)]
        try:
            try:
                self._convert_node(node)
                self._check_static_sizes(node)
            except (ValueError, TypeError) as e:
                # a Keras layer that needs a size the torch graph has dynamic ("Shapes used to initialize
                # variables must be fully-defined"): keep that size static
                if not any(k in str(e) for k in ("None", "fully-defined", "defined dimension")):
                    raise
                # Keras layers need feature and channel sizes, not the leading (batch) one
                inner = self.graph.input_symbols_of([list(v.meta.shape[1:]) for v in inputs
                                                     if isinstance(v, Value) and isinstance(v.meta, TensorMeta)])
                raise DynamicShapeError(f"Keras needs a fixed size here ({one_line(e, 120)})", inner) from e
        except DynamicShapeError as e:
            if not e.symbols:
                e.symbols = self.graph.input_symbols_of(
                    [node.meta, node.args, [v.meta for v in inputs if isinstance(v, Value)]])
                if not e.symbols and not isinstance(e.__cause__, DynamicShapeError) and e.__cause__ is not None:
                    raise e.__cause__  # a Keras error with no dynamic size in sight is not about sizes
            e.where = e.where or f"{node.target} at {node.module_path or '<root>'}"
            raise

    def _check_static_sizes(self, node: SourceNode) -> None:
        """A size the torch graph has as a constant must be one in the Keras graph too (a dynamic
        size absorbed by a floor division in the traced runs is not)."""
        result = self.env.get(node.name)
        for v in result if isinstance(result, tuple) else (result,):
            if not isinstance(v, Value) or not isinstance(v.meta, TensorMeta) or v.feature_order is not None:
                continue
            shape = getattr(v.tensor, "shape", None)
            if shape is None or len(shape) != v.rank:
                continue
            for axis, torch_dim in enumerate(v.perm):
                if isinstance(v.meta.shape[torch_dim], int) and shape[axis] is None:
                    raise DynamicShapeError(f"size {v.meta.shape[torch_dim]} of {node.name} is dynamic in Keras",
                                            self._axis_symbols(node, v.rank, torch_dim))

    def _axis_symbols(self, node: SourceNode, rank: int, dim: int) -> set:
        """The input symbols of axis ``dim`` of the node's operands of the same rank (a pooling's
        spatial sizes, not its batch): what a size of its result that Keras has dynamic comes
        from. Empty when none is known (the caller then pins every symbol the node depends on)."""
        metas = [v.meta.shape[dim] for v in (self.env.get(r.name) for r in refs_in(node.args))
                 if isinstance(v, Value) and isinstance(v.meta, TensorMeta) and v.meta.rank == rank]
        return self.graph.input_symbols_of(metas)

    def _convert_node(self, node: SourceNode) -> None:
        if node.op == "module":
            row = self.table.by_torch[node.module_type]
            get_converter(row.hook)(self, node, row)
            self.used(row)
            return
        internal = INTERNAL.get(node.target)
        if internal is not None:
            self.set(node, internal(self, node))
            return
        if self._foldable(node):
            self.set(node, self._fold(node))
            return
        row = self.table.by_aten[node.target]
        with self._parameters_as_values(node):
            result = get_converter(row.hook)(self, node, row)
        self.used(row)
        self.set(node, result)

    @contextlib.contextmanager
    def _parameters_as_values(self, node: SourceNode):
        """An op on parameters and constants only (BEiT's ``cat((q_bias, zeros, v_bias))``) is not
        folded, so that the parameters stay trainable; converters expect a graph value among the
        operands, so for this op the constants become Parameter/Constant layer outputs."""
        if any(isinstance(self.env.get(r.name), Value) for r in refs_in((node.args,))):
            yield
            return
        # only the data operand: a weight stays a constant, as the layer converters want it
        data = node.args.get("input", node.args.get("tensors"))
        values = {r.name: self.env.get(r.name) for r in refs_in((data,))}
        if not values or any(not isinstance(v, Const) for v in values.values()):
            yield
            return
        try:
            for n, v in values.items():
                self.env[n] = self.materialize(v)
            yield
        finally:
            self.env.update(values)

    def _unsupported_ops(self) -> list[tuple[str, str]]:
        """Live ops no row converts; an op on constants only needs none (torch computes it now)."""
        missing = []
        constant = self._constant_nodes()
        for node in self.graph.nodes:
            if node.name not in self.live or node.name in constant:
                continue
            if node.op == "call" and node.target not in INTERNAL and node.target not in self.table.by_aten:
                missing.append((node.target, node.module_path or "<root>"))
            elif node.op == "module" and node.module_type not in self.table.by_torch:
                missing.append((node.module_type, node.module_path))
        return missing

    # --- constant folding --------------------------------------------------------------------

    def _constant_nodes(self) -> set:
        """Nodes whose value is known before any input arrives: buffers, and ops on them only with
        static sizes (the ones ``_foldable`` computes with torch). Decided ahead of emission from
        the graph alone, so that an op without a row that only builds a constant (timm's meshgrid
        of position indices) is not reported as unsupported."""
        constant = set()
        for node in self.graph.nodes:
            if node.op == "param":
                if not self.graph.params[node.name][2]:
                    constant.add(node.name)
            elif node.op == "call" and node.target == "getitem":
                if all(r.name in constant for r in refs_in(node.args)):
                    constant.add(node.name)
            elif node.op == "call" and node.fn is not None and not node.target.startswith(self._NEVER_FOLD):
                refs = [r.name for r in refs_in((node.call_args, node.call_kwargs))]
                template_only = node.target.split(".")[1] in SHAPE_TEMPLATE_CREATION
                if (template_only or all(r in constant for r in refs)) and not has_sym(node.meta):
                    constant.add(node.name)
        return constant

    _NEVER_FOLD = ("aten.dropout", "aten.native_dropout", "aten.rand", "aten.bernoulli", "aten.feature_dropout")

    def _foldable(self, node: SourceNode) -> bool:
        """Ops on constants only are computed now, by torch itself, except where a trainable
        parameter flows in: folding would freeze it in the Keras model."""
        if node.fn is None or node.target.startswith(self._NEVER_FOLD):
            return False
        refs = list(refs_in((node.call_args, node.call_kwargs)))
        if not refs:
            # creation ops (arange, full...) with static sizes
            return not has_sym(node.meta)
        values = [self.env.get(r.name) for r in refs]
        if any(isinstance(v, Const) and v.trainable for v in values):
            return False
        return all(isinstance(v, (Const, int, float, bool)) or v is None for v in values) and not has_sym(node.meta)

    def _fold(self, node: SourceNode):
        import torch

        def real(a):
            if isinstance(a, Ref):
                v = self.env[a.name]
                return numpy_to_torch(np.array(v.array)) if isinstance(v, Const) else v
            if isinstance(a, (list, tuple)):
                return type(a)(real(x) for x in a)
            return a

        kwargs = {k: real(v) for k, v in node.call_kwargs.items()}
        if "device" in kwargs:
            kwargs["device"] = torch.device("cpu")
        with torch.no_grad():
            out = node.fn(*real(node.call_args), **kwargs)
        return _to_const(out)

    # --- boundaries --------------------------------------------------------------------------

    def _make_input(self, index: int, node: SourceNode) -> None:
        keras = self.keras
        meta: TensorMeta = node.meta
        shape = list(meta.static_shape)
        if shape and shape[0] is None and self.batch_size:
            shape[0] = self.batch_size
        perm = plan.identity(meta.rank)
        if self.io_layout == "native" and self._feeds_channel_op(node.name) and meta.rank >= 3:
            perm = plan.channels_last(meta.rank)
        keras_shape = [shape[p] for p in perm]
        x = keras.Input(batch_shape=tuple(keras_shape), dtype=meta.dtype, name=self.unique_name(node.name))
        self.inputs.append(x)
        self.input_perms.append(None if plan.is_identity(perm) else perm)
        self.env[node.name] = Value(meta, perm, {perm: x})

    def _feeds_channel_op(self, name: str) -> bool:
        from .registry import CHANNEL_HOOKS

        for n in self.graph.nodes:
            if n.op == "call" and any(r.name == name for r in refs_in(n.args)):
                row = self.table.by_aten.get(n.target)
                if row is not None and row.hook in CHANNEL_HOOKS:
                    return True
        return False

    def _output_tensor(self, v):
        if isinstance(v, Value):
            v = self.materialize(v)
            if self.io_layout == "native" and v.perm == plan.channels_last(v.rank) and v.rank >= 3:
                self.output_perms.append(tuple(int(i) for i in np.argsort(v.perm)))
                return self.keras_tensor(v, v.perm)
            self.output_perms.append(None)
            return self.keras_tensor(v, plan.identity(v.rank))
        if isinstance(v, Const):
            self.output_perms.append(None)
            return self.const_tensor(v, None, name_hint="output_const")
        raise UnsupportedOpError([(f"model output of type {type(v).__name__}", "<output>")], direction="torch2keras")


def _to_const(out):
    import torch

    if isinstance(out, torch.Tensor):
        return Const(torch_to_numpy(out))
    if isinstance(out, (list, tuple)):
        return type(out)(_to_const(o) for o in out)
    return out


