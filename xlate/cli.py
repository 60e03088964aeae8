"""The ``xlate`` command line (click). A thin layer: every command calls library functions.

Exit codes: 0 ok, 1 parity failed, 2 bad input or usage, 3 unsupported model.
torch and TensorFlow are imported only inside the commands that need them, so ``xlate --help``
answers in well under a second.
"""

from __future__ import annotations

import json

import click

from ._version import __version__
from .commands._errors import handles_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xlate")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Translate models and their training setup between PyTorch and Keras 3 / TensorFlow,
    and prove the result computes the same numbers."""
    from .bound import allow_hard_exit

    allow_hard_exit()  # a load stuck past its deadline ends the process with exit 2 (see xlate.bound)


@main.command("table")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list, one object per row.")
@click.option("--family", type=click.Choice(
    ["layer", "activation", "op", "optimizer", "loss", "schedule", "callback", "training"]),
    help="Only rows of this family.")
@handles_errors
def table_cmd(as_json: bool, family: str | None) -> None:
    """Print the mapping table (every PyTorch <-> Keras equivalence xlate knows)."""
    from .table import table

    rows = [r for r in table() if family is None or r.family == family]
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=1, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"xlate mapping table ({len(rows)} rows)", show_lines=False)
    for col in ("id", "family", "PyTorch", "Keras", "directions", "summary"):
        t.add_column(col, overflow="fold")
    for r in rows:
        dirs = "both" if len(r.directions) == 2 else r.directions[0]
        t.add_row(r.id, r.family, r.torch, r.keras, dirs, r.summary)
    Console().print(t)


def _register_commands() -> None:
    """Each command lives in its own module under xlate.commands (imports there are light)."""
    from .commands.check import check
    from .commands.check_train import check_train
    from .commands.demo import demo
    from .commands.inspect import inspect_cmd
    from .commands.onnx import onnx2keras, onnx2torch
    from .commands.tf2torch import tf2torch
    from .commands.torch2tf import torch2tf

    for command in (torch2tf, tf2torch, onnx2keras, onnx2torch, check, inspect_cmd, demo, check_train):
        main.add_command(command)


_register_commands()
