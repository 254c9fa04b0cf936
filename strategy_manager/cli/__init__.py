"""The ``strategy-manager`` command. Thin: parse, call the core, print.

Each command group lives in its own module and is attached to :data:`cli` here.
Every user error, a bad option as much as a :class:`QsmError` from the core, is one
line on stderr (``error: ...``) and exit code 2; ``--debug`` shows the core's
traceback instead. Everything printed, tracebacks included, passes through the
:class:`~strategy_manager.cli.app.OutputGuard`, which masks the secrets of the
settings; so does every log record, wherever ``--log-file`` sends it.
"""

from __future__ import annotations

import sys
import traceback
from typing import IO, Any

import click

from strategy_manager import __version__
from strategy_manager.cli import logs
from strategy_manager.cli.app import App, OutputGuard, pass_app
from strategy_manager.core.errors import QsmError


class UserError(click.ClickException):
    """One line on stderr, then exit code 2: how every user error ends."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _one_line(exc: click.ClickException) -> UserError:
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} -h')"
    return UserError(message)


def _wants_debug(ctx: click.Context) -> bool:
    app = ctx.find_object(App)
    return app.debug if app is not None else "--debug" in sys.argv[1:]


class _Group(click.Group):
    """Turns click's usage errors and the core's QsmError into :class:`UserError`."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except UserError:
            raise
        except click.ClickException as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except UserError:
            raise
        except click.ClickException as exc:
            raise _one_line(exc) from None
        except QsmError as exc:
            if _wants_debug(ctx):
                raise
            raise UserError(str(exc)) from None


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="strategy-manager")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Configuration folder (default: $QSM_CONFIG_DIR, then ./config); a named one must exist.",
)
@click.option("-v", "--verbose", count=True, help="More log output: -v info, -vv debug.")
@click.option("-q", "--quiet", count=True, help="Less output: errors only, no progress bars or summaries.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log records as text lines or JSON lines.",
)
@click.option(
    "--log-file", type=click.Path(dir_okay=False), default=None, help="Append logs here, not stderr."
)
@click.option("--debug", is_flag=True, help="Show tracebacks, and debug logs.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_dir: str | None,
    verbose: int,
    quiet: int,
    log_format: str,
    log_file: str | None,
    debug: bool,
) -> None:
    """Run many live trading strategies on any execution engine.

    Start with 'strategy-manager examples list', or 'strategy-manager COMMAND -h'.
    """
    guard = OutputGuard.current()
    if guard is None:  # called in-process (tests, embedding) rather than through main()
        guard = OutputGuard()
        guard.install()
        ctx.call_on_close(guard.uninstall)
    ctx.obj = App(config_dir=config_dir, debug=debug, quiet=quiet > 0, guard=guard)
    if ctx.resilient_parsing:  # shell completion: no logging set-up
        return
    logs.configure(logs.level_for(verbose, quiet, debug), log_format, log_file, guard.log_filter())


def _attach() -> None:
    from strategy_manager.cli import accounts, completion, config, engines, examples, run, strategies

    cli.add_command(engines.engines)
    run.register(cli)
    config.register(cli)
    strategies.register(cli)
    examples.register(cli)
    completion.register(cli)
    accounts.register(cli)


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


__all__ = ["UserError", "cli", "main", "pass_app"]
