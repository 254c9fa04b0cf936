"""``strategy-manager strategies ...`` and ``state show``: the strategy documents and their state.

An ID is ``user_id:symbol:strategy_key`` or the document's ``_id``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import click

from strategy_manager.cli.app import App, pass_app, quiet_option
from strategy_manager.cli.completion import strategy_ids
from strategy_manager.cli.output import emit_json, paint_state, progress, progress_wanted, shown_time, table
from strategy_manager.core.errors import InvalidStrategy, StoreError
from strategy_manager.core.spec import StrategySpec, describe, parse_strategy
from strategy_manager.core.store import Store, transfer
from strategy_manager.core.store.codec import natural_key, split_ident

#: Documents upserted between two moves of the progress bar.
IMPORT_CHUNK = 200

ID_ARGUMENT = click.argument("ident", metavar="ID", shell_complete=strategy_ids)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


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
@JSON_OPTION
@pass_app
def list_(app: App, show_all: bool, as_json: bool) -> None:
    """Every strategy, invalid ones too (with the field and the reason)."""
    from strategy_manager.core import status as fleet
    from strategy_manager.core.clock import SystemClock

    store = app.store()
    rows = [_row(d) for d in store.list_strategies()]
    runtime = {
        v.strategy_id: v for v in fleet.current(store, SystemClock().now(), app.settings.lease_seconds)
    }
    for r in rows:
        view = runtime.get(r["id"])
        r["state"] = view.state if view is not None else None
        r["last_error"] = view.record.last_error if view is not None else None
    if not show_all:
        rows = [r for r in rows if r["enabled"] is not False]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no strategies" + ("" if show_all else " enabled (--all shows disabled ones)"))
        return
    cells = []
    for r in rows:
        # The document's problem first; else what its orchestrator last reported.
        status = f"INVALID: {r['error']}" if not r["valid"] else (r["state"] or "not run yet")
        if r["valid"] and r["state"] in fleet.ATTENTION and r["last_error"]:
            status += f": {r['last_error']}"
        enabled = {True: "yes", False: "no"}.get(r["enabled"], repr(r["enabled"]))
        cells.append([r["id"], r["engine"], enabled, status])
    paint = {3: lambda s, n: paint_state(s, n, app.color)}
    for line in table(["ID", "ENGINE", "ENABLED", "STATUS"], cells, paint=paint):
        click.echo(line)


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
@JSON_OPTION
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
    as_json: bool,
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
    store = app.store(create=True)
    if store.get_strategy(spec.id) is not None:
        raise StoreError(f"strategy {spec.id}: already exists (use 'strategies edit' or 'import')")
    store.upsert_strategy(document)
    _done("added", spec.id, store.get_strategy(spec.id), as_json)


def _done(action: str, ident: str, document: Any, as_json: bool) -> None:
    """What a command that changed one document prints: a line, or JSON with the document."""
    if as_json:
        emit_json({"action": action, "id": ident, "document": document})
    else:
        click.echo(f"{action} {ident}")


@strategies.command("import")
@click.argument("file", metavar="FILE|-", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@quiet_option
@pass_app
def import_(app: App, file: str, as_json: bool, force: bool) -> None:
    """Upsert documents from FILE (a JSON array or JSON lines; - reads stdin) on their natural key.

    Each document is all-or-nothing and checked by its engine first; invalid ones are
    reported with the reason and the others still land. Prints the invalid ones and
    one summary line (a progress bar too on a terminal; -q: the invalid ones only).
    Exit status 1 when any was invalid.
    """
    if file == "-":
        entries = transfer.parse_entries(sys.stdin.buffer.read(), "<stdin>")
    else:
        entries = transfer.read_entries(Path(file))
    report_import(app, entries, as_json, force)


def report_import(app: App, entries: Sequence[transfer.Entry], as_json: bool, force: bool = False) -> None:
    """Import ``entries`` in chunks (the progress bar moves between them) and report."""
    store = app.store(create=True)
    check = None if force else functools.partial(_checked, app, force=False)
    outcomes: list[transfer.Outcome] = []
    with progress(len(entries), "importing", progress_wanted(app.quiet or as_json)) as advance:
        for start in range(0, len(entries), IMPORT_CHUNK):
            chunk = entries[start : start + IMPORT_CHUNK]
            outcomes.extend(transfer.import_entries(store, chunk, check))
            advance(len(chunk))
    counts = {k: sum(o.result == k for o in outcomes) for k in ("inserted", "updated", "invalid")}
    if as_json:
        emit_json({"counts": counts, "documents": [attrs.asdict(o) for o in outcomes]})
    else:
        for o in outcomes:
            if o.result == "invalid":
                click.echo(f"{o.where}: invalid: {o.reason}")
        if not app.quiet:
            click.echo(
                f"{counts['inserted']} inserted, {counts['updated']} updated, {counts['invalid']} invalid"
            )
    if counts["invalid"]:
        sys.exit(1)


@strategies.command()
@pass_app
def export(app: App) -> None:
    """Every document as a JSON array on stdout; 'import' reads it back unchanged."""
    click.echo(transfer.dumps(app.store().list_strategies()))


def _set_enabled(app: App, ident: str, enabled: bool, as_json: bool) -> None:
    store = app.store()
    _found(store, ident)
    document = store.update_strategy(ident, {"enabled": enabled})
    _done("enabled" if enabled else "disabled", describe(document), document, as_json)


@strategies.command()
@ID_ARGUMENT
@JSON_OPTION
@pass_app
def enable(app: App, ident: str, as_json: bool) -> None:
    """Enable strategy ID (also clears FAILED: the orchestrator starts it again)."""
    _set_enabled(app, ident, True, as_json)


@strategies.command()
@ID_ARGUMENT
@JSON_OPTION
@pass_app
def disable(app: App, ident: str, as_json: bool) -> None:
    """Disable strategy ID (a running worker is stopped by the orchestrator)."""
    _set_enabled(app, ident, False, as_json)


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
@ID_ARGUMENT
@click.option("--params", required=True, help="JSON object merged into params (null deletes a key).")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@JSON_OPTION
@pass_app
def edit(app: App, ident: str, params: str, force: bool, as_json: bool) -> None:
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
    if as_json:
        _done("edited", describe(document), document, as_json)
        return
    click.echo(f"edited {describe(document)}: params {json.dumps(document['params'], ensure_ascii=False)}")


@strategies.command()
@ID_ARGUMENT
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@JSON_OPTION
@pass_app
def remove(app: App, ident: str, yes: bool, as_json: bool) -> None:
    """Delete strategy ID's document (its snapshots are kept).

    On a terminal it asks first, unless --yes.
    """
    store = app.store()
    document = _found(store, ident)
    name = describe(document)
    if not yes and sys.stdin.isatty():
        click.confirm(f"remove {name}? (its snapshots are kept)", abort=True, err=True)
    if not store.remove_strategy(ident):
        raise StoreError(f"strategy {ident}: not found")
    _done("removed", name, document, as_json)


@click.group()
def state() -> None:
    """Engine state snapshots."""


@state.command()
@ID_ARGUMENT
@click.option(
    "--history", "limit", type=click.IntRange(min=1), default=20, show_default=True, help="Snapshots listed."
)
@JSON_OPTION
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
    history = store.snapshot_history(strategy_id, limit=limit)
    from strategy_manager.core import status as fleet
    from strategy_manager.core.clock import SystemClock

    record = next((r for r in store.read_status() if r.strategy_id == strategy_id), None)
    judged = fleet.judge(
        [record] if record else [], store.read_owners(), SystemClock().now(), app.settings.lease_seconds
    )
    view = judged[0] if judged else None
    status = view.record if view else None
    if document is None and not history and status is None:
        raise StoreError(f"strategy {ident}: not found")
    latest = history[0] if history else None
    summary: list[dict[str, Any]] = [
        {"seq": s.seq, "taken_at": s.taken_at, "engine": s.engine, "bytes": len(json.dumps(s.state))}
        for s in history
    ]
    if as_json:
        emit_json(
            {
                "strategy_id": strategy_id,
                "latest": attrs.asdict(latest) if latest else None,
                "history": summary,
                "status": view.as_dict() if view else None,
            }
        )
        return
    click.echo(f"strategy {strategy_id}" + ("" if document is not None else " (document removed)"))
    if view is not None and status is not None:
        state = f"{view.state} (was {status.state})" if view.stale else view.state
        click.echo(
            f"status: {paint_state(state, color=app.color)}, owner {status.owner or '-'}, "
            f"restarts {status.restarts}, heartbeat {shown_time(view.owner_heartbeat)}"
        )
    if latest is None:
        click.echo("no snapshot yet")
        return
    click.echo(
        f"latest snapshot: seq {latest.seq}, taken {shown_time(latest.taken_at)}, engine {latest.engine}"
    )
    click.echo(json.dumps(latest.state, indent=2, ensure_ascii=False, sort_keys=True))
    click.echo(f"history ({len(summary)} kept, newest first):")
    for s in summary:
        click.echo(f"  seq {s['seq']:>6}  {shown_time(s['taken_at'])}  {s['bytes']} bytes")


@state.command()
@ID_ARGUMENT
@click.option("--seq", type=int, required=True, help="The snapshot to bring back (see 'state show').")
@JSON_OPTION
@pass_app
def rollback(app: App, ident: str, seq: int, as_json: bool) -> None:
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
    if as_json:
        emit_json({"action": "rolled back", "id": strategy_id, "from_seq": seq, "seq": new_seq})
        return
    click.echo(
        f"strategy {strategy_id}: snapshot {seq} copied as {new_seq}; it is restored on the next start"
    )


def register(cli: click.Group) -> None:
    cli.add_command(strategies)
    cli.add_command(state)
