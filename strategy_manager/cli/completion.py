"""Shell completion: ``strategy-manager completion SHELL`` prints the script, and
strategy ids complete from the configured store (never creating one)."""

from __future__ import annotations

import logging

import click
from click.shell_completion import CompletionItem, get_completion_class

COMPLETE_VAR = "_STRATEGY_MANAGER_COMPLETE"


def strategy_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Natural keys of the stored documents that start with ``incomplete``."""
    from strategy_manager.cli.app import App
    from strategy_manager.core.store.codec import natural_key

    root = ctx.find_root()
    app = root.obj if isinstance(root.obj, App) else App(root.params.get("config_dir"), debug=False)
    try:
        documents = app.store().list_strategies()
    except Exception:  # completion must never print a traceback into the shell
        logging.getLogger(__name__).debug("no completion", exc_info=True)
        return []
    ids = set()
    for document in documents:
        try:
            ids.add(":".join(natural_key(document)))
        except Exception:  # a document without a natural key has nothing to complete
            continue
    return [CompletionItem(i) for i in sorted(ids) if i.startswith(incomplete)]


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; strategy ids complete too.

    \b
    bash:  eval "$(strategy-manager completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(strategy-manager completion zsh)"    (in ~/.zshrc)
    fish:  strategy-manager completion fish > ~/.config/fish/completions/strategy-manager.fish
    """
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # the Choice above lists only shells click knows
    click.echo(cls(root.command, {}, "strategy-manager", COMPLETE_VAR).source())


def register(cli: click.Group) -> None:
    cli.add_command(completion)
