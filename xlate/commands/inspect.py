"""``xlate inspect MODEL``: before converting, every layer/op of a model and whether a table row
covers it, so a user knows up front what will fail. Exit 0 when everything is covered, 3 when
something is not (the same code a conversion would fail with)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._common import model_options, stdout_console
from ._errors import handles_errors


def coverage_items(loaded) -> list[dict]:
    """[{name, op, where, row}] for every layer/op of a loaded model (row None: not covered)."""
    from ..errors import BadInputError

    if loaded.framework == "torch":
        if loaded.example_inputs is None:
            raise BadInputError(f"{loaded.path}: tracing the model needs example inputs ({loaded.format})",
                                hint="add --input-shape, batch first, once per input, e.g. --input-shape 1,3,224,224")
        from ..load import traceable_module
        from ..torch2keras.inspect import coverage

        items = coverage(traceable_module(loaded), loaded.example_inputs)
    else:
        from ..keras2torch.inspect import coverage

        items = coverage(loaded.model)
    return [item.to_dict() for item in items]


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the coverage as JSON.")
@click.option("--only-missing", is_flag=True, help="List only what no table row covers.")
@model_options
@handles_errors
def inspect_cmd(model, as_json, only_missing, model_class, input_shapes, input_dtypes, trust):
    """List MODEL's layers/ops and the table row that covers each (or that none does)."""
    from ..load import load_model

    loaded = load_model(model, model_class=model_class, input_shapes=input_shapes, input_dtypes=input_dtypes,
                        trust=trust, architecture=True)
    items = coverage_items(loaded)
    missing = [i for i in items if not i["row"]]
    direction = "torch2keras" if loaded.framework == "torch" else "keras2torch"
    if as_json:
        click.echo(json.dumps({"model": str(model), "format": loaded.format, "direction": direction,
                               "covered": len(items) - len(missing), "total": len(items), "items": items}, indent=1))
        sys.exit(3 if missing else 0)
    from rich.table import Table

    console = stdout_console()
    table = Table(title=f"{model} ({loaded.format}, {direction})", header_style="bold")
    for col in ("layer / op", "type", "where", "table row"):
        table.add_column(col, overflow="fold")
    for i in items:
        if only_missing and i["row"]:
            continue
        row = f"[green]{i['row']}[/green]" if i["row"] else "[bold red]NOT COVERED[/bold red]" + (
            f" ({i['reason']})" if i["reason"] else "")
        table.add_row(str(i["name"]), str(i["op"]), str(i["where"] or ""), row)
    console.print(table)
    if missing:
        ops = sorted({str(i["op"]) for i in missing})
        console.print(f"[bold red]{len(missing)} of {len(items)} not covered[/bold red] ({', '.join(ops)}): "
                      "the direct conversion will refuse them; --via onnx may still convert the model")
        sys.exit(3)
    console.print(f"[bold green]all {len(items)} covered[/bold green]: the direct path can convert this model")
