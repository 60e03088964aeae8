"""The error-to-exit-code decorator every command (and the ``xlate`` group itself) wears.

Owns the CLI contract for failures: an ``XlateError`` becomes one line on stderr, an optional
hint, and its exit code (1 parity failed, 2 bad input, 3 unsupported model); a foreign exception
becomes one line and exit 2; ``--debug`` re-raises. It sits below both ``xlate.cli`` and
``xlate.commands.*`` and must import neither (nor torch/TensorFlow), so there is no cycle and
``xlate --help`` stays fast.
"""

from __future__ import annotations

import functools
import sys

import click

from ..errors import XlateError, one_line


def _fail(message: str, hint: str | None, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def handles_errors(fn):
    """Turn xlate's errors and foreign exceptions into a one-line cause and an exit code.

    ``--debug`` on the group re-raises, so the full traceback is shown.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return fn(*args, **kwargs)
        except XlateError as e:
            if debug:
                raise
            first, *rest = str(e).splitlines() or [type(e).__name__]
            if rest and e.exit_code == 1:
                click.echo("\n".join(rest), err=True)
            _fail(first, e.hint, e.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # the CLI contract: one line, never a traceback (--debug shows it)
            if debug:
                raise
            _fail(f"{type(e).__name__}: {one_line(e, 400) or type(e).__name__}", "rerun with --debug for the traceback", 2)

    return wrapper
