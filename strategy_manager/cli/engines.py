"""``strategy-manager engines``: every installed engine and whether it can run."""

from __future__ import annotations

import click

from strategy_manager.cli.app import App, emit_json, pass_app


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def engines(app: App, as_json: bool) -> None:
    """List installed engines: name, distribution, module, hooks, capabilities, status."""
    entries = app.registry.entries()
    if as_json:
        emit_json([e.as_dict() for e in entries])
        return
    if not entries:
        click.echo("no engines installed")
        return
    for e in entries:
        status = e.status if e.status == "ok" else f"{e.status}: {e.error}"
        click.echo(f"{e.name}  [{status}]")
        click.echo(f"  distribution: {e.distribution} {e.dist_version or ''}".rstrip())
        click.echo(f"  module:       {e.module}")
        if e.version:
            click.echo(f"  version:      {e.version}")
        if e.description:
            click.echo(f"  description:  {e.description}")
        if e.hooks:
            click.echo(f"  hooks:        {', '.join(e.hooks)}")
        click.echo(f"  capabilities: {', '.join(e.capabilities) or '-'}")
