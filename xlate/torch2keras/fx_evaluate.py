"""The fast trace's input sets while the graph is traced: each set's values of the fx nodes.

The shape tracer (fx_tracer.py) answers a shape question by running the graph built so far on
every input set. Those runs are the recorded runs (fx_record.Run) themselves, stepped one node at
a time: once the trace is complete, each set's recording goes on from the node the trace stopped
at, instead of running the whole graph a second time (a CNN that asks about shapes down to its
last layer spent half of its trace there).

A run stepped during the trace gives the tracer the values a plain run would, and records what a
run of the complete graph would record, or raises what that run would raise:

- who reads a value later is known only once the graph is complete, so an in-place write on memory
  that an earlier node's value shares is noted and judged then, as fx_record judges it at once;
  nothing is dropped before that, so memory addresses are not reused while the run is stepped (and
  no op that moves a tensor to other memory, such as ``resize_``, has a table row);
- where the recording cannot go on (an op without a table row, a refused write...) the set's values
  are computed plainly from its start, as the tracer always did, and the recording's error (or an
  earlier noted write) is raised when the set is recorded;
- a recording is made again from scratch, as a plain ``Run``, when the graph it stepped through
  changed, or when the graph calls a function fx kept whole (``torch.fx.wrap``): such code may keep
  state in the module, and every recording must start from the module's own attributes, which
  runs stepped side by side do not.

Owns only that; the tracer asks the questions (fx_tracer.py), the runs record (fx_record.py), the
front end retries (fxtrace.py).
"""

from __future__ import annotations

from .fx_common import FastTraceUnsupported, fetch_attr, mutable, tensors_in
from .fx_record import Run

#: the modules whose functions the graph may call while its recordings are stepped side by side
_STATELESS = ("torch", "_operator", "operator", "math", "builtins")


def plain_value(root, node, env, inputs):
    """Node ``node``'s value from its arguments' values in ``env``: the fx graph's own semantics."""
    from torch.fx.node import map_arg

    if node.op == "placeholder":
        return inputs[node.target]
    if node.op == "get_attr":
        return fetch_attr(root, node.target)
    args = mutable(map_arg(node.args, lambda a: env[a]))
    kwargs = mutable(map_arg(node.kwargs, lambda a: env[a]))
    if node.op == "call_module":
        return root.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    raise FastTraceUnsupported(f"fx node kind {node.op}")


class PlainSet:
    """One input set evaluated plainly (nothing recorded)."""

    def __init__(self, root, named: dict):
        self.root = root
        self.named = named  # placeholder name -> tensor
        self.env: dict = {}

    def evaluate(self, node) -> None:
        self.env[node] = plain_value(self.root, node, self.env, self.named)

    def release(self) -> None:
        self.env = {}


class SteppedRun(Run):
    """A recorded run stepped while the graph grows: an in-place write on memory that an earlier
    node's value shares is judged once every node's last reader is known (``settle``)."""

    def __init__(self, module, root):
        super().__init__(module, root, None)
        self.nodes: list = []  # the fx nodes stepped, in order (the last one may have failed)
        self.by_storage: dict = {}  # storage address -> [(fx node, tensor)] of the values so far
        self.deferred: list = []  # (node index, the nodes whose values share the memory, the refusal)

    def step(self, n) -> None:
        if self.graph is not None:  # settled: a plain recorded run from here on
            return super().step(n)
        self.nodes.append(n)
        super().step(n)
        for o in tensors_in([self.env[n]]):
            if o.numel():
                self.by_storage.setdefault(o.untyped_storage().data_ptr(), []).append((n, o))

    def check_live(self, t, storage, allow, message) -> None:
        if self.graph is not None:
            return super().check_live(t, storage, allow, message)
        sharing = [n for n, o in self.by_storage.get(storage, ()) if o is not t and id(o) not in allow]
        if sharing:
            self.deferred.append((self.index, sharing, message))

    def settle(self, graph) -> None:
        """The graph is complete: who reads each value last is known."""
        self.graph, self.by_storage = graph, {}
        self.last_use = {a: i for i, n in enumerate(graph.nodes) for a in n.all_input_nodes}
        for n in [n for n in self.env if self.last_use.get(n, self.done) < self.done]:
            del self.env[n]  # read only by nodes run already

    def raise_deferred(self, upto: int | None = None) -> None:
        """Raise the first write noted (at node ``upto`` or before) whose memory a value still read
        then shares, as a recording of the complete graph would have raised it there."""
        for index, sharing, message in self.deferred:
            if (upto is None or index <= upto) and any(self.last_use.get(n, -1) >= index for n in sharing):
                raise FastTraceUnsupported(message)

    def release(self) -> None:
        super().release()
        self.by_storage, self.refs, self.inputs, self.keep, self.created, self.views = {}, {}, {}, [], [], {}


class RecordedSet:
    """One input set whose values come from its recorded run, stepped during the trace."""

    def __init__(self, module, root, names, values):
        self.module, self.root, self.names = module, root, names
        self.values = values  # never run: every run gets copies
        self.named = dict(zip(names, values))  # for the tracer: the set's sizes
        self.run = SteppedRun(module, root)
        self.run.begin(names, _copies(values))
        self.env = self.run.env
        self.failed = None  # the recording's error, once it could not go on
        self.fresh = False  # recorded again from scratch

    def evaluate(self, node) -> None:
        if self.failed is not None:
            self.env[node] = plain_value(self.root, node, self.env, self.plain)
            return
        try:
            self.run.step(node)
            return
        except Exception as e:  # noqa: BLE001 - judged below: the module's failure or the recording's
            self.failed = e
        # the set's values from its start, plainly; raises the module's own failure, if it is one
        self.run.release()
        self.plain, self.env = dict(zip(self.names, _copies(self.values))), {}
        for n in self.run.nodes:
            self.env[n] = plain_value(self.root, n, self.env, self.plain)

    def settle(self, graph) -> None:
        """The trace is complete: decide how this set is recorded, and drop what is not needed
        for that (values no later node reads, a failed recording's values)."""
        run = self.run
        nodes = list(graph.nodes)
        self.fresh = nodes[:len(run.nodes)] != run.nodes or any(
            n.op == "call_function" and not _stateless(n.target) for n in nodes)
        run.settle(graph)
        if self.fresh or self.failed is not None:
            run.release()
            self.env, self.plain = {}, None

    def recording(self, graph):
        """The recorded run of the complete ``graph``; raises what that run raises. The set's
        tensors are released either way."""
        try:
            if self.run.graph is None:
                self.settle(graph)
            if self.fresh:
                return Run(self.module, self.root, graph).execute(self.names, _copies(self.values))
            if self.failed is not None:
                self.run.raise_deferred(upto=len(self.run.nodes) - 1)
                raise self.failed
            self.run.raise_deferred()
            return self.run.finish()
        finally:
            self.release()

    def release(self) -> None:
        """Drop the run's tensors now: a run and its recorder refer to each other, so left to the
        collector, the tensors of a run stepped through the whole trace could outlive it."""
        self.run.release()
        self.env, self.plain = {}, None


def _stateless(target) -> bool:
    """A function of torch or of Python's operators, not one fx kept whole from the model's code."""
    module = getattr(target, "__module__", None) or ""
    return module.split(".")[0] in _STATELESS


def _copies(values) -> list:
    return [v.clone() for v in values]
