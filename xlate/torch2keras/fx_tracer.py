"""The fast trace's symbolic tracer: torch.fx with the table's modules as leaves, and proxies that
answer shape questions from real runs.

Plain fx refuses ``if x.dim() != 3`` or ``if x.shape[1] != self.channels`` (a Proxy in a
condition). Here the graph built so far is evaluated on several input sets when such a question
is asked: the example's, and one per varied symbol (that symbol's size changed, the others as in
the example, or for the batch as in the run of a smaller height: each set is compared with the set
it starts from). A size, rank or dtype that is the same in every set is answered with that value; a
size that differs stays a ``size`` node. A comparison of sizes is answered when it has one answer
over the symbol's whole range (``x.size(0) == y.size(0)``; ``B > 1`` for every batch of 2 or more);
one that holds only over part of it bounds the symbol (``if T > 64: raise`` gives T <= 64), and one
that holds at the example's size alone pins it (``if height != 224: raise``). Any other Python
control flow on traced values stops the trace, as in plain fx.

This module traces; it does not record ATen calls (fx_record.py) or merge runs (fx_merge.py). The
evaluation of each input set is fx_evaluate.py's: the fast trace's recorded runs, stepped as the
graph grows, so that recording does not run the graph on every set once more.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import types
import weakref
from fractions import Fraction

from ..errors import one_line
from .fx_common import (
    BoundFound,
    FastTraceUnsupported,
    VariationFailed,
    asserted,
    asserts_equality,
    module_path_of,
    opaque_function,
    parents_first,
    run_parents,
)
from .fx_evaluate import PlainSet
from .trace import MODULE_LEVEL, _public_name

# Factories whose values fx would compute once while tracing and keep as a constant.
NONDETERMINISTIC = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
                    "bernoulli", "multinomial", "poisson", "empty", "empty_like", "empty_strided", "new_empty",
                    "uniform_", "normal_", "exponential_", "geometric_", "log_normal_", "cauchy_", "random_",
                    "bernoulli_"}
FACTORIES = {"arange", "zeros", "ones", "full", "eye", "linspace", "tensor", "as_tensor", "scalar_tensor"}
COMPARISONS = {operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=", operator.gt: ">",
               operator.ge: ">="}


@functools.cache
def leaf_types() -> set:
    """Public names of the torch.nn classes kept whole by fx: those with a table row."""
    from ..table import table

    names = {name for name in table().by_torch if name.startswith("torch.nn.")}
    return names | set(MODULE_LEVEL) | {"torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN"}


def symbolic_trace(root, names, inputs, varied, parents=None):
    """fx-trace ``root`` with shape-aware proxies. ``inputs``: per input set, the example's first,
    a list of tensors (evaluated plainly) or an fx_evaluate.RecordedSet (its recorded run answers);
    ``varied[j]``: the Symbol that input set j changes (None for the first) from input set
    ``parents[j]`` (the example's, 0, unless given)."""
    from torch.overrides import TorchFunctionMode

    sets = [PlainSet(root, names, s) if isinstance(s, (list, tuple)) else s for s in inputs]
    tracer = shape_tracer_class()(leaf_types(), root, sets, varied, parents)

    class Factories(TorchFunctionMode):
        """Tensors made in forward are graph nodes, as in torch.export, not values fx computes once:
        a random draw would be frozen, and torch.arange(n).expand(proxy, -1) would not trace."""

        def __torch_function__(self, func, types_, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if not tracer.evaluating:
                if name in NONDETERMINISTIC:
                    raise FastTraceUnsupported(f"{name}() in forward (fx would keep one draw as a constant)")
                if name in FACTORIES and isinstance(func, types.BuiltinFunctionType):
                    return tracer.create_proxy("call_function", func, args, kwargs)
            return func(*args, **kwargs)

    tracer.factories = Factories()
    try:
        with tracer.factories:
            graph = tracer.trace(root)
    except FastTraceUnsupported:
        raise
    except Exception as e:  # any fx failure means: use torch.export
        if tracer.error is not None:  # ours, wrapped or swallowed by the module's code
            raise tracer.error from e
        raise FastTraceUnsupported(f"torch.fx: {type(e).__name__}: {one_line(e, 200)}") from e
    finally:
        # the input sets, with their values: the tracer and a failure's traceback form a cycle
        # (tracer.error), which would hold them until a full garbage collection, one set per attempt
        # (the caller releases the sets of a failed trace; those of a complete one are recorded)
        tracer.sets = []
        tracer.watched = []
    if tracer.error is not None:
        raise tracer.error
    return graph


#: Python arithmetic whose result on a size is not affine in it: a size computed with it may follow
#: the size's parity (TensorFlow's 'same' padding, padding to a window multiple)
NONLINEAR = {operator.floordiv, operator.mod, operator.truediv, operator.pow, math.ceil, math.floor}


def has_nonlinear_sizes(graph, sized_opaque=None) -> bool:
    """Whether the fx graph computes a value from a dynamic size with floor, ceil, // or %, or
    may: a function fx keeps whole (``torch.fx.wrap``: torchvision's shifted_window_attention pads
    to whole windows) computes from the sizes of real tensors where the graph cannot see it.
    ``sized_opaque``: the names of those function nodes that read a size in the recorded runs
    (None: unknown, any may); one that reads none and takes no size (torchvision's
    stochastic_depth in eval mode returns its input) computes nothing from sizes."""
    sized = set()
    for node in graph.nodes:
        inputs = node.all_input_nodes
        if node.op == "call_function" and opaque_function(node.target) and (
                sized_opaque is None or node.name in sized_opaque or any(a in sized for a in inputs)):
            return True
        reads_size = (node.op == "call_method" and node.target in ("size", "numel")) or (
            node.op == "call_function" and node.target in (getattr, operator.getitem) and inputs
            and (inputs[0] in sized or node.args[1:2] == ("shape",)))
        if reads_size:
            sized.add(node)
        elif any(a in sized for a in inputs) and node.op == "call_function" and (
                node.target in COMPARISONS or getattr(node.target, "__module__", "") in ("_operator", "math")
                or node.target in (max, min)):
            if node.target in NONLINEAR:
                return True
            sized.add(node)
    return False


def decided(compare, k1, c1, k2, c2) -> bool:
    """Whether k1*B + c1 <op> k2*B + c2 has one answer for all B >= 2."""
    k = k1 - k2
    return region(compare, k, 2 * k + c1 - c2, 2, 2, None) == (2, None)


def region(compare, k: int, c0: int, r: int, low: int, high):
    """The largest range [lo, hi] within [low, high] (None: unbounded) around the integer ``r`` where
    ``compare(c0 + k*(s - r), 0)`` has the answer it has at s = r."""
    answer = compare(c0, 0)
    if k == 0:
        return low, high
    zero = r - Fraction(c0, k)  # where the difference is 0; its sign is sign(k) * sign(s - zero)

    def same(side: int) -> bool:
        return compare(side * (1 if k > 0 else -1), 0) == answer

    pieces = [(None, math.ceil(zero) - 1, same(-1))]  # below the zero
    if zero.denominator == 1:
        pieces.append((int(zero), int(zero), same(0)))
    pieces.append((math.floor(zero) + 1, None, same(1)))  # above it
    i = next(n for n, (a, b, _) in enumerate(pieces) if (a is None or a <= r) and (b is None or r <= b))
    first = last = i
    while first > 0 and pieces[first - 1][2]:
        first -= 1
    while last < len(pieces) - 1 and pieces[last + 1][2]:
        last += 1
    lo, hi = pieces[first][0], pieces[last][1]
    lo = low if lo is None else max(lo, low)
    hi = high if hi is None else (hi if high is None else min(hi, high))
    return lo, hi


@functools.cache
def shape_tracer_class():
    """A torch.fx Tracer whose proxies answer shape questions from real runs (see the module doc).

    Defined on first use because it subclasses torch.fx classes (torch is imported lazily); the
    function is long because it is the two class bodies."""
    import torch
    import torch.fx

    static_properties = {"ndim", "dtype", "device", "layout", "is_cuda", "is_cpu", "is_sparse", "is_quantized",
                         "is_meta", "is_nested", "requires_grad"}
    static_methods = {"dim", "ndimension", "is_floating_point", "is_complex", "is_signed", "get_device"}

    class ShapeProxy(torch.fx.Proxy):
        def __getattr__(self, k):
            tracer = self.tracer
            if k in static_properties or k == "shape":
                values = tracer.tensors(self)
                if values is not None:
                    return tracer.sizes(self, None) if k == "shape" else tracer.static(values, k, lambda t: getattr(t, k))
            elif k in static_methods or k in ("size", "numel", "nelement"):
                values = tracer.tensors(self)
                if values is not None:
                    if k == "size":
                        return lambda dim=None: tracer.sizes(self, dim)
                    if k in ("numel", "nelement"):
                        return lambda: tracer.numel(self, values)
                    return lambda *a: tracer.static(values, k, lambda t: getattr(t, k)(*a))
            elif not hasattr(torch.Tensor, k) and not k.startswith("_") and tracer.tensors(self) is not None:
                # plain fx answers every attribute (hasattr(x, "anything") is True): a tensor has not
                raise AttributeError(f"'Tensor' object has no attribute '{k}'")
            return super().__getattr__(k)

        def __setitem__(self, index, value):
            # a node of its own (fx has none): its runs write the tensor in place (fx_setitem.py)
            self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})

    class ShapeTracer(torch.fx.Tracer):
        def __init__(self, leaves, root, sets, varied, parents=None):
            super().__init__()
            self.proxy_buffer_attributes = True  # buffers are graph inputs, as in torch.export
            self.leaves = leaves
            self.model_root = root
            self.sets = sets  # per input set: its values of the nodes evaluated so far (fx_evaluate.py)
            self.inputs = [s.named for s in sets]  # per input set: placeholder name -> tensor
            self.names = list(self.inputs[0])
            self.varied = varied  # per input set: the Symbol it changes (None: the example's)
            self.parents = run_parents(parents, len(sets))  # per input set: the set it changes its symbol from
            self.order = parents_first(self.parents)
            self.evaluating = False
            self.error = None
            self.factories = None  # symbolic_trace's TorchFunctionMode, off while the graph is evaluated
            self.tensor_names = None  # ({id: name} of the root's parameters, of its buffers), on first use
            # the proxies alive per node, so that a value no later node can read is dropped
            # (fx_evaluate.py): a node gets a reader only through a proxy of it
            self.alive: dict = {}  # fx node -> its proxies not yet dead
            self.watched: list = []  # a weak reference per proxy counted, calling back when it dies
            self.died: list = []  # nodes whose last proxy died, since the values were last dropped
            self.dead: set = set()  # nodes no later node can read, whose values are not dropped yet

        def _fail(self, error):
            """Raise ``error``, keeping it so that a try/except in the module cannot hide it."""
            if self.error is None:
                self.error = error
            raise error

        def is_leaf_module(self, m, qualname):
            return _public_name(type(m)) in self.leaves

        def getattr(self, attr, attr_val, parameter_proxy_cache):
            """fx's own rule (a parameter, then a buffer, becomes a get_attr of its first name in
            the root), with the names looked up in a table: fx searches every parameter and buffer
            of the root on each access, which is quadratic in the model's size. While the graph is
            evaluated, the module's own attribute."""
            if self.evaluating or not isinstance(attr_val, torch.Tensor):
                return attr_val
            if self.tensor_names is None:
                self.tensor_names = tuple({id(t): n for n, t in reversed(list(named))} for named in (
                    self.root.named_parameters(), self.root.named_buffers()))
            params, buffers = self.tensor_names
            for names, applies in ((params, isinstance(attr_val, torch.nn.Parameter)),
                                   (buffers, self.proxy_buffer_attributes)):
                name = names.get(id(attr_val)) if applies else None
                if name is not None:
                    if name not in parameter_proxy_cache:
                        parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
                    return parameter_proxy_cache[name]
            # not registered when the trace began: fx's own search
            return super().getattr(attr, attr_val, parameter_proxy_cache)

        def call_module(self, m, forward, args, kwargs):
            """fx's patched ``Module.__call__`` lands here: while the graph is evaluated, the plain
            call. fx's patches stay on during evaluation (with these two pass-throughs) because
            reverting them patches ``torch.nn.Module`` itself, which costs a walk over every Module
            subclass loaded (0.3 ms each time, four times per shape question)."""
            if self.evaluating:
                return forward(*args, **kwargs)
            return super().call_module(m, forward, args, kwargs)

        def proxy(self, node):
            proxy = ShapeProxy(node, self)
            # a getattr node (x.T) is also held by fx's Attribute, which is not a proxy of it
            if node.op in ("call_function", "call_method", "call_module") and node.target is not getattr:
                self.alive[node] = self.alive.get(node, 0) + 1
                self.watched.append(weakref.ref(proxy, functools.partial(_proxy_died, weakref.ref(self), node)))
            return proxy

        def _drop_dead(self, evaluated=None) -> None:
            """Drop the values of nodes no later node can read: their last proxy died and every node
            that reads them has run (``evaluated``: the node just run in every set)."""
            done = self.sets[0].env
            ready = []
            if self.died:
                self.dead.update(self.died)
                self.died = []
                ready = list(self.dead)
            elif evaluated is not None:
                ready = [a for a in (*evaluated.all_input_nodes, evaluated) if a in self.dead]
            for node in ready:
                if node in done and all(u in done for u in node.users):
                    self.dead.discard(node)
                    for s in self.sets:
                        s.drop(node)

        def where(self) -> str:
            paths = [path for path, _ in self.module_stack.values() if path]
            return paths[-1] if paths else "<root>"

        # -- evaluating the graph so far on every input set --

        def tensors(self, proxy):
            """The proxy's value in each input set, or None when it is not a tensor."""
            node = proxy.node
            if node not in self.sets[0].env:
                self._evaluate_until(node)
            values = [s.env[node] for s in self.sets]
            return values if all(isinstance(v, torch.Tensor) for v in values) else None

        def _evaluate_until(self, target) -> None:
            self.evaluating = True
            try:
                with torch.no_grad(), _mode_off(self.factories):
                    self._drop_dead()
                    for node in self.graph.nodes:
                        if node in self.sets[0].env:
                            continue
                        for j in self.order:
                            self._evaluate_guarded(node, j)
                        self._drop_dead(node)
                        if node is target:
                            return
            finally:
                self.evaluating = False

        def _evaluate_guarded(self, node, j):
            try:
                self.sets[j].evaluate(node)
            except FastTraceUnsupported:
                raise
            except Exception as e:  # noqa: BLE001 - the module's own code failed on this input set
                what = f"{node.format_node()} at {module_path_of(node)}: {type(e).__name__}: {one_line(e, 160)}"
                if j == 0:
                    self._fail(FastTraceUnsupported(f"evaluating {what}"))
                equality = False
                if isinstance(e, AssertionError):
                    self._assertion(node)
                    equality = asserts_equality(node)
                self._fail(VariationFailed(self.varied[j].name, what, retry=not equality))

        def _assertion(self, node) -> None:
            """A ``torch._assert`` on sizes that failed in a varied run (timm's ``_assert(H ==
            self.img_size[0])``) is decided over each symbol's range like an ``if``: a size it holds
            at only is kept static, and a bound narrows the range, at once, where trying other
            sizes would fail at each of them. Returns when the condition is of another kind."""
            cond = asserted(node)
            if isinstance(cond, torch.fx.Node) and _is_comparison(cond):
                self._decide_ints(cond)

        def _ints(self, arg, kinds=(int,)):
            """``arg``'s value in each input set when it is an int in all of them (one of ``kinds``),
            else None."""
            if isinstance(arg, kinds) and not isinstance(arg, bool):
                return [arg] * len(self.sets)
            if not isinstance(arg, torch.fx.Node):
                return None
            if arg not in self.sets[0].env:
                self._evaluate_until(arg)
            values = [s.env[arg] for s in self.sets]
            ok = all(isinstance(v, kinds) and not isinstance(v, bool) for v in values)
            # (a recorded run's sizes are SizeInts and SizeQuotients)
            return [int(v) if isinstance(v, int) else float(v) for v in values] if ok else None

        # -- shape questions --

        def static(self, values, what, fn):
            answers = [fn(v) for v in values]
            for j, a in enumerate(answers[1:], 1):
                if a != answers[self.parents[j]]:
                    self._fail(VariationFailed(self.varied[j].name, f"{what} changes with it at {self.where()}",
                                               retry=False))
            return answers[0]

        def sizes(self, proxy, dim):
            if isinstance(dim, torch.fx.Proxy):
                return self.create_proxy("call_method", "size", (proxy, dim), {})
            values = self.tensors(proxy)
            if dim is None:
                dims = [self.sizes(proxy, d) for d in range(values[0].dim())]
                return torch.Size(dims) if all(isinstance(d, int) for d in dims) else tuple(dims)
            sizes = {v.shape[dim] for v in values}
            if len(sizes) == 1:
                return sizes.pop()
            return self.create_proxy("call_method", "size", (proxy, dim), {})

        def numel(self, proxy, values):
            counts = {v.numel() for v in values}
            if len(counts) == 1:
                return counts.pop()
            return self.create_proxy("call_method", "numel", (proxy,), {})

        def to_bool(self, proxy):
            """A comparison of sizes, decided over each symbol's range (see the module doc). Any
            other condition on a traced value stops the trace."""
            node = proxy.node
            compare = node.target if node.op == "call_function" and node.target in COMPARISONS else None
            if _is_comparison(node):
                decided = self._decide_ints(node)
                if decided is not None:
                    return decided
                sides = [self._ints(a, (int, float)) for a in node.args]
                if None not in sides:
                    return self._decide_ratio(compare, sides, node)
            elif compare is None and (values := self._ints(node)) is not None:
                # `if pad_h or pad_w:` on sizes: the same decision as `pad_h != 0`
                self._not_nonlinear(node)
                return self._decide(operator.ne, values, node)
            return super().to_bool(proxy)

        def _decide_ints(self, node):
            """Comparison ``node`` decided over each symbol's range (``_decide``) when both its
            sides are ints in every input set, else None."""
            sides = [self._ints(a) for a in node.args]
            if None in sides:
                return None
            return self._decide(node.target, [a - b for a, b in zip(*sides)], node)

        def _not_nonlinear(self, node) -> None:
            """Pin the sizes a bare ``if size:`` reads through %, //, floor or ceil: runs at a few
            sizes (a quarter of the example, its neighbour) cannot tell ``(-H) % 2`` is 0 only at
            even H, so a branch decided there would be wrong at other sizes. (A comparison such as
            ``pad - H < 0`` keeps its region analysis in ``_decide``; Keras -> torch packages compute
            'same' padding that way, and the gate checks other sizes.)"""
            seen, todo, nonlinear = set(), [node], False
            while todo and len(seen) < 400:
                n = todo.pop()
                if n in seen:
                    continue
                seen.add(n)
                nonlinear |= n.op == "call_function" and n.target in NONLINEAR
                todo.extend(n.all_input_nodes)
            if not nonlinear:
                return
            envs = [s.env for s in self.sets]
            for j in range(1, len(envs)):
                p = envs[self.parents[j]]
                if any(isinstance(p.get(n), int) and envs[j].get(n) != p.get(n) for n in seen):
                    self._fail(VariationFailed(self.varied[j].name, f"the condition `{_render(node)}` at "
                                               f"{self.where()} takes % or // of it", retry=False))

        def _decide_ratio(self, compare, sides, node) -> bool:
            """A comparison of numbers that are not all ints (``max(k_h / q_h, 1.0)``, timm MViT-v2's
            relative positions): no region analysis; decided when neither side changes with a
            varied size, else that size is kept at the example's."""
            for j in range(1, len(self.sets)):
                if any(side[j] != side[self.parents[j]] for side in sides):
                    self._fail(VariationFailed(self.varied[j].name, f"the condition `{_render(node)}` at "
                                               f"{self.where()} compares a fraction of it", retry=False))
            return compare(*(side[0] for side in sides))

        def _decide(self, compare, diff, node) -> bool:
            slopes = {}
            for j in range(1, len(diff)):
                change = diff[j] - diff[self.parents[j]]
                if change == 0:
                    continue
                sym = self.varied[j]
                step = self.inputs_size(j) - sym.size
                if change % step:
                    self._fail(VariationFailed(sym.name, f"the condition `{_render(node)}` at {self.where()} is "
                                               "not linear in it", retry=False))
                slopes[j] = change // step
            if not slopes:
                return compare(diff[0], 0)
            if len(slopes) > 1:
                j = max(slopes)
                self._fail(VariationFailed(self.varied[j].name, f"the condition `{_render(node)}` at {self.where()} "
                                           "ties it to another size", retry=False))
            (j, k), = slopes.items()
            sym = self.varied[j]
            # decisions on the batch hold for every batch of 2 or more (an example of 1 takes them at 2)
            ref, c0 = (self.inputs_size(j), diff[j]) if sym.batch and sym.size < 2 else (sym.size, diff[0])
            low = max(sym.low, 2) if sym.batch else sym.low
            lo, hi = region(compare, k, c0, ref, low, sym.high)
            answer = compare(c0, 0)
            if (lo, hi) == (low, sym.high):
                return answer
            reason = f"`{_render(node)}` at {self.where()}"
            if lo == hi == ref:
                self._fail(VariationFailed(sym.name, reason, retry=False))
            self._fail(BoundFound(sym.name, lo if lo != low else None, hi if hi != sym.high else None, reason))

        def inputs_size(self, j) -> int:
            """The varied symbol's size in input set j."""
            sym = self.varied[j]
            index, axis = sym.members[0]
            return int(self.inputs[j][self.names[index]].shape[axis])

    return ShapeTracer


def _proxy_died(tracer_ref, node, _ref) -> None:
    """A proxy of ``node`` died: noted, and its value dropped at the next evaluation (a proxy may die
    in the middle of one, when the collector frees a cycle)."""
    tracer = tracer_ref()
    if tracer is None or node not in tracer.alive:
        return
    tracer.alive[node] -= 1
    if tracer.alive[node] == 0:
        tracer.died.append(node)


@contextlib.contextmanager
def _mode_off(mode):
    """``mode`` off the torch-function mode stack while the graph is evaluated: it passes every
    call through then, and a mode in Python costs every torch call (a recording's ``.shape``,
    ``.numel()``, ``untyped_storage()`` on each value too) some microseconds."""
    from torch.overrides import _get_current_function_mode_stack, _pop_mode_temporarily

    stack = _get_current_function_mode_stack()
    if mode is None or not stack or stack[-1] is not mode:
        yield
        return
    with _pop_mode_temporarily():
        yield


def _is_comparison(node) -> bool:
    """Whether fx node ``node`` is ``a < b`` (or another of COMPARISONS) of two arguments."""
    return node.op == "call_function" and node.target in COMPARISONS and len(node.args) == 2 and not node.kwargs


def _render(node, depth: int = 0) -> str:
    """A short source-like form of an fx size expression: ``x.size(1) > 64``."""
    import torch.fx

    def arg(a):
        return _render(a, depth + 1) if isinstance(a, torch.fx.Node) else repr(a)

    if depth > 4:
        return node.name
    if node.op == "call_function" and node.target in COMPARISONS and len(node.args) == 2:
        return f"{arg(node.args[0])} {COMPARISONS[node.target]} {arg(node.args[1])}"
    if node.op == "call_method" and node.target == "size":
        return f"{arg(node.args[0])}.size({', '.join(arg(a) for a in node.args[1:])})"
    if node.op == "call_function" and node.target is operator.getitem:
        return f"{arg(node.args[0])}[{arg(node.args[1])}]"
    symbols = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.floordiv: "//"}
    if node.op == "call_function" and node.target in symbols and len(node.args) == 2:
        return f"({arg(node.args[0])} {symbols[node.target]} {arg(node.args[1])})"
    if node.op == "getattr" or (node.op == "call_function" and node.target is getattr):
        return f"{arg(node.args[0])}.{node.args[1]}"
    return node.name
