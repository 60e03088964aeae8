"""The fast trace's input sets while the graph is traced: each set's values of the fx nodes.

The shape tracer (fx_tracer.py) answers a shape question by running the graph built so far on
every input set. Those runs are the recorded runs (fx_record.Run) themselves, stepped one node at
a time: once the trace is complete, each set's recording goes on from the node the trace stopped
at, instead of running the whole graph a second time (a CNN that asks about shapes down to its
last layer spent half of its trace there).

A run stepped during the trace gives the tracer the values a plain run would, and records what a
run of the complete graph would record, or raises what that run would raise:

- who reads a value later is known for certain only once the graph is complete, so an in-place
  write on memory that an earlier node's value shares is noted and judged then, as fx_record judges
  it at once (no op that moves a tensor to other memory, such as ``resize_``, has a table row);
- a value is dropped before that when no later node can read it: the tracer (fx_tracer.py) saw the
  last proxy of its node die and every node that reads it run. Its tensors leave ``by_storage``
  with it, so memory it gives back and a new value takes is not mistaken for shared. Without this
  every set held all its values until the trace was complete: timm rexnet_100's trace at batch 1
  grew the process by 123 MB where a forward pass grows it by 21 MB, and on a machine where fresh
  memory costs (this project's, about 2.5 ms per MB) that was 0.3 s. Should a dropped value be read
  all the same (a proxy copied past the tracer), the set computes its values again from its
  start and is recorded again from scratch, never from a wrong value;
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


class _Dropped:
    """The value of an fx node dropped while the graph is traced (see the module doc)."""

    def __repr__(self) -> str:
        return "<dropped>"


DROPPED = _Dropped()


class ValueDropped(Exception):
    """A node read the value of a node dropped as unreadable: the tracer's liveness was wrong."""


def check_inputs(node, env) -> None:
    if any(env.get(a) is DROPPED for a in node.all_input_nodes):
        raise ValueDropped(node.name)


def droppable(value) -> bool:
    """Whether dropping ``value`` gives memory back: it holds tensors (sizes and other Python
    values stay, the tracer still reads them)."""
    return bool(tensors_in([value]))

#: the modules whose functions the graph may call while its recordings are stepped side by side
_STATELESS = ("torch", "_operator", "operator", "math", "builtins")


def plain_value(root, node, env, inputs):
    """Node ``node``'s value from its arguments' values in ``env``: the fx graph's own semantics."""
    from torch.fx.node import map_arg

    if node.op == "placeholder":
        return inputs[node.target]
    if node.op == "get_attr":
        return fetch_attr(root, node.target)
    check_inputs(node, env)
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
    """One input set evaluated plainly (nothing recorded). A value read after it was dropped is
    computed again, with every value before it, from fresh copies of the inputs: a node may have
    written them in place."""

    def __init__(self, root, names, values):
        self.root, self.names, self.values = root, names, values  # never run: every run gets copies
        self.named, self.env = dict(zip(names, _copies(values))), {}  # placeholder name -> tensor

    def evaluate(self, node) -> None:
        try:
            self.env[node] = plain_value(self.root, node, self.env, self.named)
        except ValueDropped:  # every value again from its start
            nodes = [*self.env, node]
            self.named, self.env = dict(zip(self.names, _copies(self.values))), {}
            for n in nodes:
                self.env[n] = plain_value(self.root, n, self.env, self.named)

    def drop(self, node) -> None:
        if droppable(self.env.get(node)):
            self.env[node] = DROPPED

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
        check_inputs(n, self.env)
        self.nodes.append(n)
        super().step(n)
        for o in tensors_in([self.env[n]]):
            if o.numel():
                self.by_storage.setdefault(o.untyped_storage().data_ptr(), []).append((n, o))

    def drop(self, n) -> None:
        """Drop node ``n``'s value: no later node reads it (its memory goes back now)."""
        value = self.env.get(n)
        if self.graph is not None or not droppable(value):
            return
        for o in tensors_in([value]):
            if o.numel():
                ptr = o.untyped_storage().data_ptr()
                kept = [(m, t) for m, t in self.by_storage.get(ptr, ()) if m is not n]
                if kept:
                    self.by_storage[ptr] = kept
                else:
                    self.by_storage.pop(ptr, None)
        self.env[n] = DROPPED

    def reads_dropped(self, graph) -> bool:
        """Whether a node of the complete graph not run yet reads a value dropped while it was traced."""
        later = list(graph.nodes)[self.done:]
        return any(self.env.get(a) is DROPPED for n in later for a in n.all_input_nodes)

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
        self.plainly = None  # a PlainSet, once the recording cannot go on or a dropped value was read
        self.failed = None  # the recording's error, once it could not go on
        self.replayed = False  # a dropped value was read: evaluated plainly, recorded from scratch
        self.fresh = False  # recorded again from scratch

    @property
    def env(self) -> dict:
        """The set's values of the nodes evaluated so far."""
        return self.run.env if self.plainly is None else self.plainly.env

    def evaluate(self, node) -> None:
        if self.plainly is not None:
            return self.plainly.evaluate(node)
        try:
            self.run.step(node)
            return
        except ValueDropped:
            self.replayed = True
            nodes = [*self.run.nodes, node]
        except Exception as e:  # noqa: BLE001 - judged below: the module's failure or the recording's
            self.failed = e
            nodes = self.run.nodes  # the failed node last
        # the set's values from its start, plainly; raises the module's own failure, if it is one
        self.run.release()
        self.plainly = PlainSet(self.root, self.names, self.values)
        for n in nodes:
            self.plainly.evaluate(n)

    def drop(self, node) -> None:
        (self.run if self.plainly is None else self.plainly).drop(node)

    def settle(self, graph) -> None:
        """The trace is complete: decide how this set is recorded, and drop what is not needed
        for that (values no later node reads, a failed recording's values)."""
        run = self.run
        nodes = list(graph.nodes)
        self.fresh = self.replayed or nodes[:len(run.nodes)] != run.nodes or any(
            n.op == "call_function" and not _stateless(n.target) for n in nodes)
        if not self.fresh and self.failed is None and run.reads_dropped(graph):
            self.fresh = True
        run.settle(graph)
        if self.fresh or self.failed is not None:
            run.release()
            self.plainly = None

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
        self.plainly = None


def _stateless(target) -> bool:
    """A function of torch or of Python's operators, not one fx kept whole from the model's code."""
    module = getattr(target, "__module__", None) or ""
    return module.split(".")[0] in _STATELESS


def _copies(values) -> list:
    return [v.clone() for v in values]
