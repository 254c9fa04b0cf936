"""``strategy-manager examples``: the example strategies installed distributions ship,
and the adapter template."""

from __future__ import annotations

from pathlib import Path

import click

from strategy_manager.cli.app import App, pass_app, quiet_option
from strategy_manager.cli.output import emit_json, table
from strategy_manager.cli.strategies import report_import
from strategy_manager.core.examples import copy_engine_template, find_examples, get_example
from strategy_manager.core.store import transfer

GUIDE = (
    "https://github.com/quant-strategy-manager/quant-strategy-manager/blob/main/docs/writing-an-adapter.md"
)


@click.group()
def examples() -> None:
    """Example strategies shipped with the core and the adapters, and an adapter to copy."""


@examples.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """Every installed example: its name, distribution and what it runs."""
    found = find_examples()
    if as_json:
        emit_json([e.as_dict() for e in found])
        return
    if not found:
        click.echo("no examples installed")
        return
    rows = [[e.name, e.distribution, f"BROKEN: {e.error}" if e.error else e.about] for e in found]
    for line in table(["NAME", "DISTRIBUTION", "ABOUT"], rows):
        click.echo(line)
    click.echo("")
    click.echo("strategy-manager examples import NAME... puts them in the store.")


@examples.command("import")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help="Store documents their engine refuses (they show BLOCKED).")
@quiet_option
@pass_app
def import_(app: App, names: tuple[str, ...], as_json: bool, force: bool) -> None:
    """Import the examples NAME... into the store, as 'strategies import' would.

    An example that reads files of its own says which command makes them.
    """
    chosen = [get_example(name) for name in names]  # every name checked before anything is written
    entries: list[transfer.Entry] = []
    for example in chosen:
        read = transfer.read_entries(example.path())
        entries += [transfer.Entry(f"{example.name} {e.where}", e.document, e.error) for e in read]
    try:
        report_import(app, entries, as_json, force)
    finally:
        if not as_json:
            for example in chosen:
                if example.before:
                    click.echo(f"{example.name}: before 'run', make its files: {example.before}")


@examples.command()
@click.argument("destination", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
def engine(destination: Path, as_json: bool) -> None:
    """Copy the example engine adapter into the new folder DIR: a complete distribution
    (pyproject.toml, the hooks, the conformance tests) to start your own from."""
    written = copy_engine_template(destination)
    if as_json:
        emit_json([str(p) for p in written])
        return
    click.echo(f"wrote {len(written)} files to {destination}; next:")
    click.echo(f"  cd {destination} && pip install -e '.[test]' && pytest tests")
    click.echo(f"  the guide: {GUIDE}")


def register(cli: click.Group) -> None:
    cli.add_command(examples)
