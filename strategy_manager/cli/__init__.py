"""The ``strategy-manager`` command. Thin: parse, call the core, print.

Each command group lives in its own module and is attached to :data:`cli` here.
Errors from the core (:class:`QsmError`) become one line on stderr and exit code 2;
``--debug`` shows the traceback instead. Everything printed, tracebacks included,
passes through the :class:`~strategy_manager.cli.app.OutputGuard`, which masks the
secrets of the settings.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import click

from strategy_manager import __version__
from strategy_manager.cli.app import App, OutputGuard, pass_app
from strategy_manager.core.errors import QsmError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QsmError as exc:
            if ctx.find_object(App) and ctx.find_object(App).debug:  # type: ignore[union-attr]
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="strategy-manager")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Configuration folder (default: $QSM_CONFIG_DIR, then ./config).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, config_dir: str | None, debug: bool) -> None:
    """Run many live trading strategies on any execution engine."""
    guard = OutputGuard.current()
    if guard is None:  # called in-process (tests, embedding) rather than through main()
        guard = OutputGuard()
        guard.install()
        ctx.call_on_close(guard.uninstall)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = App(config_dir=config_dir, debug=debug, guard=guard)


def _attach() -> None:
    from strategy_manager.cli import config, engines, run, strategies

    cli.add_command(engines.engines)
    run.register(cli)
    config.register(cli)
    strategies.register(cli)


_attach()


def main() -> None:
    guard = OutputGuard()
    guard.install()
    try:
        cli.main(prog_name="strategy-manager")
    except QsmError as exc:  # raised outside a command, e.g. while parsing
        if "--debug" in sys.argv[1:]:
            traceback.print_exc()  # through the guard, like everything else
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


__all__ = ["cli", "main", "pass_app"]
