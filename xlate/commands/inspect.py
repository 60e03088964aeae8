"""``xlate inspect MODEL``: before converting, every layer/op of a model and the route that covers
it (a table row; for Keras models also the traced route), so a user knows up front what will fail,
and (PyTorch models) each input size dynamic or static with the op and module path that pins it.
Exit 0 when everything is covered, 3 when something is not (the same code a conversion would fail
with)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import dynamic_options, model_options, stdout_console, torch_options
from ._errors import handles_errors


def coverage_items(loaded, dynamic="auto") -> tuple[list[dict], list[dict]]:
    """([{name, op, where, row}] for every layer/op of a loaded model (row None: not covered),
    [{input, axis, size, dynamic, low, high, reason}] per input size)."""
    from ..errors import BadInputError

    if loaded.framework == "torch":
        if loaded.example_inputs is None:
            raise BadInputError(f"{loaded.path}: tracing the model needs example inputs ({loaded.format})",
                                hint="add --input-shape, batch first, once per input, e.g. --input-shape 1,3,224,224")
        from ..load import traceable_module
        from ..torch2keras.inspect import coverage_and_dims

        items, dims = coverage_and_dims(traceable_module(loaded), loaded.example_inputs, dynamic)
        return [item.to_dict() for item in items], [d.to_dict() for d in dims]
    from ..keras2torch.inspect import coverage

    items = coverage(loaded.model)
    dims = [{"input": getattr(t, "name", f"input{i}"), "index": i, "axis": a, "size": d, "dynamic": d is None,
             "reason": "" if d is None else "fixed in the Keras model"}
            for i, t in enumerate(loaded.model.inputs) for a, d in enumerate(t.shape)]
    return [item.to_dict() for item in items], dims


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the coverage as JSON.")
@click.option("--only-missing", is_flag=True, help="List only what no table row covers.")
@model_options
@dynamic_options
@handles_errors
def inspect_cmd(model, as_json, only_missing, model_class, input_shapes, input_dtypes, trust, static, **options):
    """List MODEL's layers/ops and the table row that covers each (or that none does), and each
    input size dynamic or static (with what pins it)."""
    from ..input_shapes import dynamic_option
    from ..load import load_model

    loaded = load_model(model, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                        trust=trust, architecture=True, **torch_options(options))
    items, dims = coverage_items(loaded, dynamic_option(input_shapes, static))
    missing = [i for i in items if not i["row"]]
    direction = "torch2keras" if loaded.framework == "torch" else "keras2torch"
    if as_json:
        click.echo(json.dumps({"model": str(model), "format": loaded.format, "direction": direction,
                               "covered": len(items) - len(missing), "total": len(items), "items": items,
                               "dims": dims}, indent=1))
        sys.exit(3 if missing else 0)
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"{model} ({loaded.format}, {direction})", header_style="bold")
    routes = any(i.get("route") for i in items)
    for col in ("layer / op", "type", "where", *(("route",) if routes else ()), "table row"):
        table.add_column(col, overflow="fold")
    for i in items:
        if only_missing and i["row"]:
            continue
        if i.get("route") == "traced":
            row = "[yellow]traced[/yellow] (torch.export capture, its own class)"
        else:
            row = f"[green]{i['row']}[/green]" if i["row"] else "[bold red]NOT COVERED[/bold red]" + (
                f" ({i['reason']})" if i["reason"] else "")
        route = (str(i.get("route", "")),) if routes else ()
        table.add_row(str(i["name"]), str(i["op"]), str(i["where"] or ""), *route, row)
    console.print(table)
    _print_dims(console, dims)
    if missing:
        ops = sorted({str(i["op"]) for i in missing})
        console.print(f"[bold red]{len(missing)} of {len(items)} not covered[/bold red] ({', '.join(ops)}): "
                      "the direct conversion will refuse them; --via onnx may still convert the model")
        sys.exit(3)
    traced = sum(1 for i in items if i.get("route") == "traced")
    how = f" ({traced} through the traced route)" if traced else ""
    console.print(f"[bold green]all {len(items)} covered[/bold green]{how}: the direct path can convert this model")


def _print_dims(console, dims) -> None:
    """One row per input size: dynamic (with its bounds) or static (with the reason)."""
    from rich.table import Table

    if not dims:
        return
    table = Table(title="input sizes", header_style="bold")
    for col in ("input", "axis", "example", "size", "why"):
        table.add_column(col, overflow="fold")
    for d in dims:
        if d["dynamic"]:
            low, high = d.get("low"), d.get("high")
            span = f"dynamic ({low or 1}..{high if high is not None else 'inf'})" if "low" in d else "dynamic"
            kind = f"[green]{span}[/green]"
        else:
            kind = "static"
        table.add_row(str(d["input"]), str(d["axis"]), str(d["size"]), kind, d.get("reason") or "")
    console.print(table)
