"""Sublayers of a traced layer that have a table row are written as their native torch module
(``nn.Linear``, ``nn.LayerNorm``, ``nn.Conv2d``...) by the table route's own emitter.

For each such call the emitter runs on a one-node graph (the sublayer, one tensor in, one out,
in the Keras layout the traced code computes in), so it declares the module, ports the weights
through the row's transforms and writes the forward lines exactly as for a top-level layer. The
writer splices those lines into the traced class, renaming their locals (``Snippet.code``).
"""

from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass, field

from ...errors import UnsupportedOpError


@dataclass
class Snippet:
    init: list  # ``self.attr = ...`` lines
    forward: list  # statements, input variable ``x``
    ret: str  # the output expression
    state: dict  # module-relative state
    attrs: set
    helpers: set = field(default_factory=set)
    rows: dict = field(default_factory=dict)


def resolve(root, locator: tuple):
    """The layer at ``locator`` (indices through ``_flatten_layers(recursive=False)``) under ``root``."""
    layer = root
    for i in locator:
        subs = list(layer._flatten_layers(include_self=False, recursive=False))
        if i >= len(subs):
            return None
        layer = subs[i]
    return layer


def keras_shape(meta) -> tuple:
    """A captured tensor shape as a Keras shape: batch and symbolic sizes unknown."""
    return tuple(None if i == 0 or not isinstance(d, int) else d for i, d in enumerate(meta.shape))


def emit_call(layer, attr: str, in_meta, out_meta) -> Snippet | None:
    """The table route's code for one call of ``layer`` (None: its row refuses this configuration)."""
    from ..emit import Emitter
    from ..walk import Graph, Node, Ref, Tensor, kind_of

    tensors = {0: Tensor(0, keras_shape(in_meta), in_meta.dtype), 1: Tensor(1, keras_shape(out_meta), out_meta.dtype)}
    node = Node(attr, attr, layer, kind_of(layer), (Ref(0),), {}, [0], [1])
    graph = Graph("native", tensors, [node], [0], [1], ["x"], None, {id(layer): 1})
    em = Emitter(graph, io_layout="source")
    try:
        em.run()
    except UnsupportedOpError:
        return None
    ret, _ = em.return_statement()
    return Snippet(list(em.init_lines), list(em.forward_lines), ret.removeprefix("return "), dict(em.state),
                   set(em._attrs), set(em.helpers), dict(em.rows_used))


class Natives:
    """Decides which scopes of a plan are native modules; ``__call__`` is ``Plan.decide``'s callback."""

    def __init__(self, root_layer, plan, attr_of):
        self.root_layer = root_layer
        self.plan = plan
        self.attr_of = attr_of  # scope -> the attribute name it will get in its class
        self.snippets: dict[str, list[Snippet]] = {}

    def __call__(self, scope: str, regions) -> bool:
        from ...table import table
        from .. import converters  # noqa: F401 - importing the package registers every converter
        from ..registry import get_converter
        from ..walk import kind_of

        if self.root_layer is None:
            return False
        info = self.plan.program.scopes[scope]
        layer = resolve(self.root_layer, info.locator)
        if layer is None or type(layer).__name__ != info.cls:
            return False
        row = table().by_keras.get(kind_of(layer))
        if row is None or "keras2torch" not in row.directions or get_converter(row.hook) is None:
            return False
        snippets = []
        for r in regions:
            in_meta, out_meta = self.plan.meta(r.inputs[0]), self.plan.meta(r.outputs[0])
            if in_meta is None or out_meta is None or in_meta.kind != "tensor" or out_meta.kind != "tensor":
                return False
            snippet = emit_call(layer, self.attr_of(scope), in_meta, out_meta)
            if snippet is None or (snippets and snippet.init != snippets[0].init):
                return False
            snippets.append(snippet)
        self.snippets[scope] = snippets
        return True


def _in_call(tokens, i: int) -> bool:
    depth = 0
    for tok in tokens[:i]:
        if tok.string in "([{":
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
    return depth > 0


def rename(line: str, mapping: dict[str, str]) -> str:
    """``line`` with its local names replaced (code only: strings and comments untouched)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    spans = []
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NAME and tok.string in mapping and not (i and tokens[i - 1].string == "."):
            if i + 1 < len(tokens) and tokens[i + 1].string == "=" and _in_call(tokens, i):
                continue
            spans.append((tok.start[1], tok.end[1], mapping[tok.string]))
    for start, end, new in reversed(spans):
        line = line[:start] + new + line[end:]
    return line
