"""``strategy-manager strategies ...`` and ``state show``: the strategy documents and their state.

An ID is ``user_id:symbol:strategy_key`` or the document's ``_id``.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import click

from strategy_manager.cli.app import App, emit_json, pass_app
from strategy_manager.core.errors import InvalidStrategy, StoreError
from strategy_manager.core.spec import StrategySpec, describe, parse_strategy
from strategy_manager.core.store import Store, transfer
from strategy_manager.core.store.codec import natural_key, split_ident


def _json_option(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return transfer.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: column {exc.colno}: {exc.msg}", param_hint=what) from None
    except RecursionError:
        raise click.BadParameter(transfer.TOO_DEEP, param_hint=what) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


FORCE_HELP = "Store it even if its engine refuses it (not if it is malformed or over a limit)."


def _checked(app: App, document: Any, force: bool) -> StrategySpec:
    """The document's spec once its engine accepts it (with --force, once it parses)."""
    if force:
        return parse_strategy(document)
    from strategy_manager.core.validation import validate_document

    return validate_document(app.settings, app.registry, document)


def _found(store: Store, ident: str) -> dict[str, Any]:
    document = store.get_strategy(ident)
    if document is None:
        raise StoreError(f"strategy {ident}: not found")
    return document


def _row(document: dict[str, Any]) -> dict[str, Any]:
    """What ``list`` shows of one document, valid or not."""
    try:
        spec = parse_strategy(document)
    except InvalidStrategy as exc:
        name = describe(document)
        reason = str(exc).removeprefix(f"{name}: ")
        return {
            "id": name,
            "_id": document.get("_id"),
            "engine": document.get("engine") if isinstance(document.get("engine"), str) else None,
            "enabled": document.get("enabled", True),
            "valid": False,
            "error": reason,
            "updated_at": _when(document.get("updated_at")),
        }
    return {
        "id": spec.id,
        "_id": spec.doc_id,
        "engine": spec.engine,
        "enabled": spec.enabled,
        "valid": True,
        "error": None,
        "updated_at": _when(spec.updated_at),
    }


def _when(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@click.group()
def strategies() -> None:
    """The strategy documents: list, add, import, export, enable, disable, edit, remove."""


@strategies.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include disabled strategies.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: App, show_all: bool, as_json: bool) -> None:
    """Every strategy, invalid ones too (with the field and the reason)."""
    rows = [_row(d) for d in app.store().list_strategies()]
    if not show_all:
        rows = [r for r in rows if r["enabled"] is not False]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no strategies" + ("" if show_all else " enabled (--all shows disabled ones)"))
        return
    click.echo(f"{'ID':<40} {'ENGINE':<12} {'ENABLED':<8} STATUS")
    for r in rows:
        status = "ok" if r["valid"] else f"INVALID: {r['error']}"
        enabled = {True: "yes", False: "no"}.get(r["enabled"], repr(r["enabled"]))
        click.echo(f"{r['id']:<40} {r['engine'] or '-':<12} {enabled:<8} {status}")


@strategies.command()
@click.option("--user-id", default="default", show_default=True)
@click.option("--symbol", required=True, help="e.g. 002050.SZ")
@click.option("--strategy-key", required=True)
@click.option("--engine", required=True, help="An installed engine name (strategy-manager engines).")
@click.option("--engine-class", default=None, help="module.Class, resolved inside import_paths.")
@click.option("--calendar", default=None, help="Trading calendar, e.g. XSHG.")
@click.option("--params", default=None, help="Strategy parameters, a JSON object.")
@click.option("--schedule", default=None, help="Schedule overrides, a JSON object.")
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@pass_app
def add(
    app: App,
    user_id: str,
    symbol: str,
    strategy_key: str,
    engine: str,
    engine_class: str | None,
    calendar: str | None,
    params: str | None,
    schedule: str | None,
    disabled: bool,
    force: bool,
) -> None:
    """Add one strategy; an existing ID is refused (use edit or import).

    The engine checks the document first (its class, its params); one it refuses is
    not stored, and the exit status is 2.
    """
    document: dict[str, Any] = {
        "user_id": user_id,
        "symbol": symbol,
        "strategy_key": strategy_key,
        "enabled": not disabled,
        "engine": engine,
    }
    for name, value in (
        ("engine_class", engine_class),
        ("calendar", calendar),
        ("params", _json_option(params, "--params")),
        ("schedule", _json_option(schedule, "--schedule")),
    ):
        if value is not None:
            document[name] = value
    document.setdefault("params", {})
    spec = _checked(app, document, force)
    store = app.store()
    if store.get_strategy(spec.id) is not None:
        raise StoreError(f"strategy {spec.id}: already exists (use 'strategies edit' or 'import')")
    store.upsert_strategy(document)
    click.echo(f"added {spec.id}")


@strategies.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@pass_app
def import_(app: App, file: Path, as_json: bool, force: bool) -> None:
    """Upsert documents from FILE (a JSON array or JSON lines) on their natural key.

    Each document is all-or-nothing and checked by its engine first; invalid ones are
    reported with the reason and the others still land. Exit status 1 when any was
    invalid.
    """
    check = None if force else functools.partial(_checked, app, force=False)
    outcomes = transfer.import_entries(app.store(), transfer.read_entries(file), check)
    counts = {k: sum(o.result == k for o in outcomes) for k in ("inserted", "updated", "invalid")}
    if as_json:
        emit_json({"counts": counts, "documents": [attrs.asdict(o) for o in outcomes]})
    else:
        for o in outcomes:
            click.echo(
                f"{o.where}: {o.result} {o.ident or ''}".rstrip() + (f": {o.reason}" if o.reason else "")
            )
        click.echo(f"{counts['inserted']} inserted, {counts['updated']} updated, {counts['invalid']} invalid")
    if counts["invalid"]:
        raise SystemExit(1)


@strategies.command()
@pass_app
def export(app: App) -> None:
    """Every document as a JSON array on stdout; 'import' reads it back unchanged."""
    click.echo(transfer.dumps(app.store().list_strategies()))


def _set_enabled(app: App, ident: str, enabled: bool) -> None:
    store = app.store()
    _found(store, ident)
    document = store.update_strategy(ident, {"enabled": enabled})
    click.echo(f"{'enabled' if enabled else 'disabled'} {describe(document)}")


@strategies.command()
@click.argument("ident", metavar="ID")
@pass_app
def enable(app: App, ident: str) -> None:
    """Enable strategy ID (also clears FAILED: the orchestrator starts it again)."""
    _set_enabled(app, ident, True)


@strategies.command()
@click.argument("ident", metavar="ID")
@pass_app
def disable(app: App, ident: str) -> None:
    """Disable strategy ID (a running worker is stopped by the orchestrator)."""
    _set_enabled(app, ident, False)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes a key."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@strategies.command()
@click.argument("ident", metavar="ID")
@click.option("--params", required=True, help="JSON object merged into params (null deletes a key).")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@pass_app
def edit(app: App, ident: str, params: str, force: bool) -> None:
    """Merge --params into strategy ID's params (JSON merge patch).

    The engine checks the result first; if it refuses it, nothing changes and the exit
    status is 2.
    """
    patch = _json_option(params, "--params")
    if not isinstance(patch, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--params")
    store = app.store()
    current = _found(store, ident)
    merged = merge_patch(current.get("params") or {}, patch)
    _checked(app, {**current, "params": merged}, force)
    document = store.update_strategy(ident, {"params": merged})
    click.echo(f"edited {describe(document)}: params {json.dumps(document['params'], ensure_ascii=False)}")


@strategies.command()
@click.argument("ident", metavar="ID")
@pass_app
def remove(app: App, ident: str) -> None:
    """Delete strategy ID's document (its snapshots are kept)."""
    store = app.store()
    document = _found(store, ident)
    if not store.remove_strategy(ident):
        raise StoreError(f"strategy {ident}: not found")
    click.echo(f"removed {describe(document)}")


@click.group()
def state() -> None:
    """Engine state snapshots."""


@state.command()
@click.argument("ident", metavar="ID")
@click.option("--history", "limit", type=int, default=20, show_default=True, help="Snapshots listed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, ident: str, limit: int, as_json: bool) -> None:
    """The latest snapshot of strategy ID, a summary of its history, and its runtime status."""
    store = app.store()
    document = store.get_strategy(ident)
    if document is not None:
        strategy_id = ":".join(natural_key(document))
    elif split_ident(ident) is not None:  # the document may be gone, its snapshots kept
        strategy_id = ident
    else:
        raise StoreError(f"strategy {ident}: not found")
    history = store.snapshot_history(strategy_id, limit=max(1, limit))
    status = next((r for r in store.read_status() if r.strategy_id == strategy_id), None)
    if document is None and not history and status is None:
        raise StoreError(f"strategy {ident}: not found")
    latest = history[0] if history else None
    summary = [
        {"seq": s.seq, "taken_at": s.taken_at, "engine": s.engine, "bytes": len(json.dumps(s.state))}
        for s in history
    ]
    if as_json:
        emit_json(
            {
                "strategy_id": strategy_id,
                "latest": attrs.asdict(latest) if latest else None,
                "history": summary,
                "status": attrs.asdict(status) if status else None,
            }
        )
        return
    click.echo(f"strategy {strategy_id}" + ("" if document is not None else " (document removed)"))
    if status is not None:
        click.echo(f"status: {status.state}, owner {status.owner or '-'}, restarts {status.restarts}")
    if latest is None:
        click.echo("no snapshot yet")
        return
    click.echo(
        f"latest snapshot: seq {latest.seq}, taken {latest.taken_at.isoformat()}, engine {latest.engine}"
    )
    click.echo(json.dumps(latest.state, indent=2, ensure_ascii=False, sort_keys=True))
    click.echo(f"history ({len(summary)} kept, newest first):")
    for snap in history:
        size = len(json.dumps(snap.state))
        click.echo(f"  seq {snap.seq:>6}  {snap.taken_at.isoformat()}  {size} bytes")


@state.command()
@click.argument("ident", metavar="ID")
@click.option("--seq", type=int, required=True, help="The snapshot to bring back (see 'state show').")
@pass_app
def rollback(app: App, ident: str, seq: int) -> None:
    """Make snapshot SEQ of strategy ID the latest again, as a new snapshot.

    History is kept: the old state is copied under a new sequence number, and the
    strategy restores it on its next start. A running strategy would overwrite it
    with its next snapshot, so disable it first.
    """
    from strategy_manager.core.clock import SystemClock
    from strategy_manager.core.store import SnapshotWrite

    store = app.store()
    document = store.get_strategy(ident)
    strategy_id = ":".join(natural_key(document)) if document is not None else ident
    status = next((r for r in store.read_status() if r.strategy_id == strategy_id), None)
    if status is not None and status.state in ("RUNNING", "STARTING", "PAUSED"):
        raise StoreError(
            f"strategy {strategy_id}: is {status.state}; disable it first "
            f"(strategy-manager strategies disable {strategy_id}), roll back, then enable it"
        )
    found = next((s for s in store.snapshot_history(strategy_id, limit=10_000) if s.seq == seq), None)
    if found is None:
        raise StoreError(f"strategy {strategy_id}: no snapshot with seq {seq} is kept")
    (new_seq,) = store.save_snapshots(
        [SnapshotWrite(strategy_id, found.engine, found.state, SystemClock().now())]
    )
    click.echo(
        f"strategy {strategy_id}: snapshot {seq} copied as {new_seq}; it is restored on the next start"
    )


def register(cli: click.Group) -> None:
    cli.add_command(strategies)
    cli.add_command(state)
