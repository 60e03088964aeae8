"""Fast trace front end: torch.fx symbolic tracing plus a few real runs, instead of torch.export.

torch.export spends 0.3-10 s on fake tensors and symbolic shapes. This builds the same kind of
SourceGraph in tens of milliseconds, with the same dynamic sizes:

1. ``fx_tracer``: torch.fx traces the module with the table's modules as leaves; its proxies
   answer shape questions from the example and from one input set per dynamic candidate
   (dims.DimPlan: the batch, sequence length, height and width...), each changing one size.
2. ``fx_record``: the fx graph runs on each input set, recording the ATen calls torch makes (the
   runs that answer the tracer's shape questions are these recordings, ``fx_evaluate``).
3. ``fx_merge``: the runs become one graph; what changes with a size becomes a ``Sym``.

A size the module rejects at another value, or whose change changes the graph, is tried at
another value and then kept at the example's size, with the reason, in the plan. Anything the
fast path cannot reproduce exactly raises ``FastTraceUnsupported``; ``trace_dynamic`` then uses
torch.export (export_trace.py).
"""

from __future__ import annotations

import itertools
import logging
import math

from ..errors import BadInputError, one_line
from .bounds import apply_bounds
from .dims import BATCH, DimPlan, Traced
from .fx_common import BoundFound, EqualityAsserted, FastTraceUnsupported, VariationFailed, parents_first
from .fx_evaluate import RecordedSet
from .fx_inputs import bind_inputs, copies, is_small, refuse_hooks, resized, traceable_root
from .fx_merge import merge
from .fx_record import Run
from .fx_tracer import decided as _decided  # noqa: F401 - the batch decision rule, tested on its own
from .fx_tracer import has_nonlinear_sizes, symbolic_trace
from .module_state import ModuleState
from .source_graph import SourceGraph
from .trace import _as_tuple

log = logging.getLogger(__name__)

BATCH_SYMBOL = BATCH
MAX_ATTEMPTS = 24


def trace_dynamic(module, example_inputs, dynamic="auto") -> Traced:
    """The fx fast path when it applies, else torch.export (export_trace.ExportTrace). Attributes
    the module's forward writes (caches) are put back after each attempt (module_state.py)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    state = ModuleState(module)
    try:
        return _fast_or_export(module, example_inputs, dynamic, state)
    finally:
        state.restore()


def _fast_or_export(module, example_inputs, dynamic, state) -> Traced:
    from ..errors import UnsupportedOpError

    try:
        return FastTrace(module, example_inputs, dynamic, state)
    except FastTraceUnsupported as e:
        log.info("fast trace not applicable, using torch.export: %s", e)
        from .export_trace import ExportTrace

        state.restore()
        try:
            return ExportTrace(module, example_inputs, dynamic, fx_reason=one_line(e, 160))
        except UnsupportedOpError as export_error:
            if not isinstance(e, RequiredPinned):
                raise
            # a size asked to stay dynamic: the fast trace's reason names the op and module that pin it
            raise UnsupportedOpError([(f"{e.label} cannot stay dynamic: {e.reason}", "<inputs>")],
                                     direction="torch2keras",
                                     hint="leave it out of dynamic= (or give a number instead of ? on the CLI)") \
                from export_error


def trace_fast_or_export(module, example_inputs, dynamic="auto") -> SourceGraph:
    return trace_dynamic(module, example_inputs, dynamic).graph


def fx_trace(module, example_inputs, dynamic="auto") -> SourceGraph:
    """Trace ``module`` with torch.fx and real runs into a SourceGraph with dynamic sizes.

    Raises FastTraceUnsupported when the result could differ from what the module computes."""
    return FastTrace(module, example_inputs, dynamic).graph


class FastTrace(Traced):
    """The fx graph, its recorded runs and the plan; ``graph`` is their merge."""

    def __init__(self, module, example_inputs, dynamic="auto", state=None):
        import torch

        if not isinstance(module, torch.nn.Module):
            raise BadInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
        args, kwargs = _as_tuple(example_inputs)
        names, values, call = bind_inputs(module, args, kwargs)
        self.plan = DimPlan(names, [tuple(v.shape) for v in values], dynamic)
        refuse_hooks(module)
        was_training = module.training
        module.eval()
        threads = torch.get_num_threads()
        if is_small(module, values):
            # the ops of a small model cost less than waking (and, on a busy machine, waiting for) the
            # intra-op thread pool
            torch.set_num_threads(1)
        try:
            root = traceable_root(module, names, call)
            self.runs = _Runs(module, root, names, values, self.plan, state)
            self.runs.trace()
        finally:
            torch.set_num_threads(threads)
            module.train(was_training)
        self.graph = None
        self._merge()

    def pin(self, names, reason: str) -> None:
        for name in names:
            self.runs.pin(name, reason)
        self._merge()

    def _merge(self) -> None:
        while True:
            varied, sizes, recordings, parents = self.runs.active()
            try:
                graph = merge(recordings, varied, sizes, parents)
            except VariationFailed as e:
                self.runs.pin(e.symbol, e.reason)
                continue
            before = set(self.plan.symbols)
            apply_bounds(graph, self.plan)
            if set(self.plan.symbols) != before:  # a bound left a symbol one size: merge without it
                continue
            graph.dims = self.plan.finish(graph)
            self.graph = graph
            return


class RequiredPinned(FastTraceUnsupported):
    """A size asked to stay dynamic that the fast trace must keep static (torch.export may still)."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"{label} was asked to stay dynamic: {reason}")
        self.label, self.reason = label, reason


class _Runs:
    """The input sets, the fx graph and one recording per input set, retried until they agree."""

    def __init__(self, module, root, names, values, plan: DimPlan, state=None):
        self.module, self.root, self.names, self.values, self.plan = module, root, names, values, plan
        self.sizes: dict[str, int] = {}  # symbol -> the size its run uses
        self.recordings: dict[str, object] = {}  # "" (the example) or symbol -> Recording
        # symbol -> (odd size, Recording, the symbol of the run it starts from or None) when the
        # graph computes sizes
        self.probes: dict[str, tuple] = {}
        self.parents: dict[str, str] = {}  # symbol -> the symbol whose run its run starts from (chain_parents)
        self.order: list[str] = []  # the varied symbols in the order the tracer steps their runs
        self.cache: dict = {}
        # every trace and run starts from the module's own attributes (trace_dynamic's snapshot, if given)
        self.state = state if state is not None else ModuleState(module)

    def pin(self, name: str, reason: str) -> None:
        sym = self.plan.symbols.get(name)
        if sym is not None and sym.required:
            index, axis = sym.members[0]
            raise RequiredPinned(f"input {self.names[index]!r} axis {axis}", reason)
        self.plan.pin(name, reason)
        self.sizes.pop(name, None)
        self.recordings.pop(name, None)
        self.probes.pop(name, None)

    def active(self):
        """(the Symbol each run varies, its size there, the recordings, the run each differs from in
        that symbol only): the example's run first, then one per symbol, then the odd-size probes."""
        rerun = set()
        for name in sorted(self.parents, key=self._depth):  # a run again: its chain's later runs too
            parent = self.parents[name]
            if self._active(name) and (not self._active(parent) or parent in rerun):
                self._rebase(name)
                rerun.add(name)
        stale = [name for name, (_, _, base) in self.probes.items() if name in self.plan.symbols
                 and base is not None and (not self._active(base) or base in rerun)]
        if stale:  # the run a probe started from changed or went: probe again
            base = self._probe_base()
            for name in stale:
                probe = self._probe_run(self.graph, self.plan.symbols[name], base)
                if probe is None:
                    del self.probes[name]
                else:
                    self.probes[name] = probe
        names = [n for n in self.sizes if n in self.plan.symbols]
        probes = [n for n in self.probes if n in self.plan.symbols]
        varied = [None] + [self.plan.symbols[n] for n in names + probes]
        sizes = [None] + [self.sizes[n] for n in names] + [self.probes[n][0] for n in probes]
        return varied, sizes, [self.recordings[""]] + [self.recordings[n] for n in names] + [
            self.probes[n][1] for n in probes], _parent_indices(
            varied, self.parents, 1 + len(names), [self.probes[n][2] for n in probes])

    def _active(self, name) -> bool:
        return name in self.sizes and name in self.plan.symbols

    def _chain(self, name) -> list:
        """``name``, then the symbols whose runs its run starts from, nearest first."""
        chain = [name]
        while chain[-1] in self.parents:
            chain.append(self.parents[chain[-1]])
        return chain

    def _depth(self, name) -> int:
        return len(self._chain(name)) - 1

    def trace(self) -> None:
        last: dict[str, str] = {}
        for _ in range(MAX_ATTEMPTS):
            for sym in list(self.plan.active()):
                if sym.name not in self.sizes:
                    size = sym.variation()
                    if size is None:
                        self.pin(sym.name, last.get(sym.name) or "no other size it accepts")
                    else:
                        self.sizes[sym.name] = size
            try:
                failures = self._attempt()
                if not failures:
                    return
            except VariationFailed as e:
                failures = [e, *self._after_alone(e.symbol)]
            except BoundFound as e:
                _drop_frames(e)
                failures = []
                self.plan.narrow(e.symbol, e.low, e.high, e.reason)
                size = self.sizes.get(e.symbol)
                sym = self.plan.symbols.get(e.symbol)
                if sym is None or (size is not None and not sym.within(size)):
                    self.sizes.pop(e.symbol, None)
            for e in failures:
                _drop_frames(e)
                last[e.symbol] = e.reason
                if self._retries(e):
                    self.plan.symbols[e.symbol].tried.append(self.sizes.pop(e.symbol))
                else:
                    self.pin(e.symbol, e.reason)
        raise FastTraceUnsupported("the dynamic sizes did not settle")

    def _attempt(self) -> list:
        import torch

        names = [n for n in self.sizes if n in self.plan.symbols]
        varied = [None] + [self.plan.symbols[n] for n in names]
        self.parents = chain_parents(varied, self.sizes)
        parents = _parent_indices(varied, self.parents)
        # the order the tracer steps the runs in, at each node (parents first)
        self.order = [varied[j].name for j in parents_first(parents) if varied[j] is not None]
        inputs = [copies(self.values)] + [self._inputs(s) for s in varied[1:]]
        # the runs the tracer steps to answer shape questions are the recordings (fx_evaluate.py)
        sets = [RecordedSet(self.module, self.root, self.names, values) for values in inputs]
        self.state.restore()
        try:
            try:
                graph = symbolic_trace(self.root, self.names, sets, varied, parents)
            finally:
                self.state.restore()
            # no shape question stepped any run: the graph depends on none of the sizes varied
            unasked = all(s.run.done == 0 for s in sets)
            for s in sets:  # the values no later node reads go before any set's recording goes on
                s.settle(graph)
            code = graph.python_code("self").src
            self.recordings = {}
            failures = []  # every varied run that fails, so one more attempt settles them all
            failed, after_failed = set(), set()
            with torch.no_grad():
                for j in parents_first(parents):
                    sym, evaluated = varied[j], sets[j]
                    if parents[j] in failed or parents[j] in after_failed:
                        after_failed.add(j)
                        if not sym.batch:
                            # its run starts from one that failed, so its own failure would be
                            # blamed on that run's symbol and found an attempt later: run its
                            # symbol alone from the example now (a ViT's height, width and channels
                            # each fail an assert: one attempt, not three)
                            evaluated.release()
                            failure = self._alone(graph, sym)
                            if failure is not None:
                                failures.append(failure)
                            continue
                    key = (code, *(() if sym is None else self._sizes_of(sym)))
                    if key not in self.cache:
                        try:
                            self.cache[key] = self._record(evaluated, graph, sym)
                        except VariationFailed as e:
                            failed.add(j)
                            if j not in after_failed:
                                failures.append(e)
                            else:  # a run it starts from failed: it runs again from that run's next size
                                _drop_frames(e)
                            continue
                    evaluated.release()
                    self.recordings["" if sym is None else sym.name] = self.cache[key]
        finally:  # each set's tensors go once it is recorded, or when the attempt fails
            for s in sets:
                s.release()
        if failures and not (unasked and self._pinned_away(failures)):
            return failures
        active = [s for s in varied[1:] if s.name in self.plan.symbols]  # less any symbol just pinned
        sized_opaque = set().union(*(r.sized_opaque for r in self.recordings.values()))
        self.probes = self._probe(graph, active) if has_nonlinear_sizes(graph, sized_opaque) else {}
        self.graph = graph
        return []

    def _retries(self, failure) -> bool:
        """Whether a failed run's symbol is tried at another size next (else it is pinned)."""
        return failure.retry and failure.symbol in self.sizes and not _weight_mismatch(failure.reason)

    def _pinned_away(self, failures) -> bool:
        """Pin the symbols of ``failures`` and keep this attempt, when the graph did not depend on
        them and nothing else changes without them: every failure pins its symbol (no other size
        to try) and no run starts from its run. An image's channels varied to 2 fail at the first
        convolution of nearly every CNN: the next attempt traced the same graph again (and found
        every other run recorded already) only to drop that run. Returns whether it did."""
        starts = set(self.parents.values())
        if any(e.symbol in starts or self._retries(e) for e in failures):
            return False
        for e in failures:
            _drop_frames(e)
            self.pin(e.symbol, e.reason)
            self.parents.pop(e.symbol, None)
        return True

    def _alone(self, graph, sym):
        """The VariationFailed of a plain run of ``graph`` on the example with ``sym`` alone at
        its size, or None when that run goes through (the symbol then runs again, in its chain,
        next attempt)."""
        import torch

        values = self._inputs_at([(sym.name, self.sizes[sym.name])])
        try:
            with torch.no_grad():
                self.state.restore()
                Run(self.module, self.root, graph).execute(self.names, values)
        except Exception as e:  # noqa: BLE001 - the module's own code failed at that size
            failure = _variation_failure(sym, e)
            _drop_frames(e)
            return failure
        finally:
            self.state.restore()
        return None

    def _after_alone(self, failed: str) -> list:
        """The VariationFailed of each run the tracer steps after ``failed``'s, run alone from the
        example: a run that fails while the graph is traced stops the trace at that node before the
        runs after it reach the node (those that start from it would be blamed on its symbol), so
        their symbols were tried an attempt later, one at a time. LeViT's and Hiera's position
        biases refuse every other height and width: 10 attempts, now 6. Batch runs are not tried
        here (at the example's full size they cost a second example run)."""
        import torch

        names = self.order
        out = []
        for name in names[names.index(failed) + 1:] if failed in names else ():
            sym = self.plan.symbols.get(name)
            if sym is None or sym.batch or name not in self.sizes:
                continue
            try:
                with torch.no_grad():
                    self.state.restore()
                    self.root(*self._inputs_at([(name, self.sizes[name])]))
            except Exception as e:  # noqa: BLE001 - the module's own code failed at that size
                where = self._failing_module(e)
                _drop_frames(e)
                failure = _variation_failure(sym, e)
                out.append(VariationFailed(name, f"{failure.reason} at {where}", retry=failure.retry))
            finally:
                self.state.restore()
        return out

    def _failing_module(self, error: BaseException) -> str:
        """The path of the innermost submodule whose code is on ``error``'s traceback (the reason
        a symbol is kept static names where, as a traced run's failure does)."""
        import torch

        paths = self.cache.get("module paths")
        if paths is None:
            paths = self.cache["module paths"] = {id(m): p for p, m in self.module.named_modules()}
        where, tb = "", error.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, torch.nn.Module) and id(owner) in paths:
                where = paths[id(owner)]
            tb = tb.tb_next
        return where or "<root>"

    def _rebase(self, name: str) -> None:
        """The run of ``name`` started from a symbol since kept static (or from a run made again):
        run it again from the nearest run of its chain still varied, else from the example (a
        plain run of the traced graph), or keep ``name`` static too if that fails."""
        import torch

        parent = next((p for p in self._chain(name)[1:] if self._active(p)), None)
        del self.parents[name]
        if parent is not None:
            self.parents[name] = parent
        sym = self.plan.symbols[name]
        try:
            with torch.no_grad():
                self.state.restore()
                self.recordings[name] = Run(self.module, self.root, self.graph).execute(self.names, self._inputs(sym))
        except Exception as e:  # noqa: BLE001 - the module's own code failed at that size
            self.pin(name, f"{type(e).__name__}: {e}")

    def _sizes_of(self, sym) -> tuple:
        """The sizes symbol ``sym``'s run changes from the example: (name, size) of each run of its
        chain, the first first, then its own."""
        return tuple((name, self.sizes[name]) for name in reversed(self._chain(sym.name)))

    def _inputs(self, sym) -> list:
        return self._inputs_at(self._sizes_of(sym))

    def _inputs_at(self, sizes) -> list:
        """The example's inputs with each (symbol name, size) of ``sizes`` resized, in order."""
        values = self.values
        for name, size in sizes:
            values = resized(values, self.plan.symbols[name], size)
        return values

    def _probe(self, graph, symbols) -> dict:
        """One more run per symbol at an odd size, for a graph that computes sizes with floor,
        ceil, // or %: a value that follows a size's parity looks constant across runs whose sizes
        differ by a power of two, and the merge must explain this run too. The odd size sits next
        to the varied run's size (a quarter or half of the example's), else next to the example's.
        Every probe starts from the varied run of least work (_probe_base): an image's height and
        width are probed at a sixteenth of the example's work each, where from the example they
        cost a quarter."""
        base = self._probe_base()
        probes = {}
        for sym in symbols:
            probe = None if sym.batch else self._probe_run(graph, sym, base)
            if probe is not None:
                probes[sym.name] = probe
        return probes

    def _probe_base(self):
        """The varied run of least work that varies no batch (None: the example's)."""
        def work(name):
            return math.prod(size / self.plan.symbols[n].size for n, size in self._sizes_of(self.plan.symbols[name]))

        runs = [n for n in self.sizes if self._active(n)
                and not any(self.plan.symbols[n2].batch for n2 in self._chain(n))]
        return min(runs, key=lambda n: (work(n), -self._depth(n)), default=None)

    def _probe_run(self, graph, sym, base):
        """(odd size, Recording, base) of ``sym``'s probe: the run of ``base`` (None: the
        example's) with ``sym`` at an odd size, so the two differ in ``sym`` alone; None when there
        is no such size or the module refuses it."""
        import torch

        varied = self.sizes[sym.name]
        size = next((p for p in (varied + 1, varied - 1, sym.size + 1, sym.size - 1)
                     if p >= 2 and sym.within(p) and p not in (varied, sym.size)), None)
        if size is None:
            return None
        sizes = dict(self._sizes_of(self.plan.symbols[base])) if base is not None else {}
        sizes[sym.name] = size
        values = self._inputs_at(sizes.items())
        try:
            with torch.no_grad():
                self.state.restore()
                return size, Run(self.module, self.root, graph).execute(self.names, values), base
        except Exception as e:  # noqa: BLE001 - not a size the module takes: nothing to check there
            log.debug("no probe of %s at %d: %s", sym.name, size, e)
            return None

    def _record(self, evaluated, graph, sym):
        try:
            self.state.restore()
            return evaluated.recording(graph)
        except VariationFailed:
            raise
        except Exception as e:  # the module's own code failed on these inputs
            if sym is None:
                if isinstance(e, FastTraceUnsupported):
                    raise
                raise FastTraceUnsupported(f"running the example: {type(e).__name__}: {e}") from e
            raise _variation_failure(sym, e) from e


def _variation_failure(sym, error: BaseException) -> VariationFailed:
    """A varied run's failure, blamed on its symbol: another size may work unless an assertion of
    equality failed."""
    reason = str(error) if isinstance(error, FastTraceUnsupported) else f"{type(error).__name__}: {error}"
    return VariationFailed(sym.name, reason, retry=not isinstance(error, EqualityAsserted))


#: a run joins the chain when it at most halves the work of the run it starts from
CHAIN_RATIO = 0.5


def chain_parents(varied, sizes) -> dict:
    """{symbol: the symbol whose run its run starts from}. The runs that vary a size other than the
    batch to at most half of it form a chain, the smallest ratio first: the height at a quarter of
    the example, the width at a quarter from that run (a sixteenth of the example's work, where
    from the example it cost a quarter). The others start from the last of them: the batch (batch 2
    at a sixteenth costs an eighth of a batch-1 example, at the full size it cost two) and sizes
    varied by a little, like an image's 3 channels varied to 2, which saves little work and which
    the first convolution usually refuses: a run that fails leaves no run after it to do again.
    The merge and the shape tracer compare each run with the run it starts from, which differs
    from it in that one symbol."""
    chain = sorted((s for s in varied[1:] if not s.batch and sizes[s.name] <= s.size * CHAIN_RATIO),
                   key=lambda s: sizes[s.name] / s.size)
    if not chain:
        return {}
    parents = {later.name: earlier.name for earlier, later in itertools.pairwise(chain)}
    parents.update({s.name: chain[-1].name for s in varied[1:] if s.name not in parents and s is not chain[0]})
    return parents


def _parent_indices(varied, parents: dict, runs: int | None = None, probe_bases=()) -> list:
    """Per run: the index of the run it differs from in its symbol only (None for the example's):
    a symbol's own run, not its odd-size probe, which comes later. The probes (the runs from
    index ``runs`` on) start from the runs of the symbols in ``probe_bases`` (None or missing: the
    example's)."""
    runs = len(varied) if runs is None else runs
    index: dict = {}
    for j, s in enumerate(varied[1:runs], 1):
        index.setdefault(s.name, j)
    bases = list(probe_bases) + [None] * (len(varied) - runs - len(probe_bases))
    return [None] + [index.get(parents.get(s.name), 0) for s in varied[1:runs]] + [
        index.get(b, 0) for b in bases]


def _drop_frames(error: BaseException) -> None:
    """Forget where a failed attempt failed: its traceback's frames (and those of its cause) hold
    that attempt's tracer and runs, with every input set's activations, in a reference cycle that
    only a full garbage collection would free; the retry needs only the symbol and the reason."""
    while error is not None:
        following = error.__cause__ or error.__context__
        error.__traceback__ = error.__cause__ = error.__context__ = None
        error = following


#: a failure of this kind repeats at every other size: a weight's shape fixes the size
_WEIGHT_MISMATCH = ("shapes cannot be multiplied", "channels, but got")


def _weight_mismatch(reason: str) -> bool:
    return any(k in reason for k in _WEIGHT_MISMATCH)
