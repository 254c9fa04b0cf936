"""``strategy-manager config``: where each setting comes from, and which store is in use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from strategy_manager.cli.app import App, pass_app
from strategy_manager.cli.output import emit_json
from strategy_manager.core.masking import settings_view
from strategy_manager.core.settings import LoadedSettings, Settings
from strategy_manager.core.store import describe_location

SOURCE_NAMES = {
    "env": "environment",
    ".env": ".env",
    "production.json": "production.json",
    "default": "default",
}


def store_choice(loaded: LoadedSettings) -> dict[str, Any]:
    """Which store the settings select, where it is, and why; never opens it."""
    settings, source = loaded.settings, loaded.sources["mongo_uri"]
    where = _source_text(loaded, source)
    if settings.mongo_uri:
        return {
            "kind": "mongodb",
            "location": describe_location(settings),
            "reason": f"MONGO_URI from {where}",
            "text": f"MongoDB at {describe_location(settings)} (MONGO_URI from {where})",
        }
    reason = "no MONGO_URI at any level" if source == "default" else f"MONGO_URI is empty in {where}"
    if loaded.data_dir_default == "user data directory":
        reason += "; the user data directory, as the current folder has no config/ or .qsm/"
    exists = Path(settings.embedded_path).is_file()
    return {
        "kind": "embedded",
        "location": describe_location(settings),
        "path": str(settings.embedded_path),
        "exists": exists,
        "reason": reason,
        "text": f"embedded SQLite at {describe_location(settings)} ({reason})"
        + ("" if exists else "\n  not created yet: 'strategies import' or 'run' creates it"),
    }


def _source_text(loaded: LoadedSettings, source: str) -> str:
    if source in (".env", "production.json"):
        return str(loaded.config_dir / source)
    return SOURCE_NAMES.get(source, source)


def _rows(loaded: LoadedSettings, show: bool, declared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    values = settings_view(loaded.settings, declared) if show else {}
    for f in attrs.fields(Settings):
        row: dict[str, Any] = {
            "source": loaded.sources[f.name],
            "variable": f.metadata.get("env") or "ENABLE_<ENGINE>",
            "doc": f.metadata.get("doc", ""),
        }
        if show:
            row["value"] = values[f.name]
        rows[f.name] = row
    return rows


@click.command()
@click.option("--show", is_flag=True, help="Also print each value (secrets masked).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def config(app: App, show: bool, as_json: bool) -> None:
    """Where each setting comes from (env / .env / production.json / default) and the store in use.

    Precedence, highest first: environment variables, config/.env, config/production.json,
    built-in defaults. The config directory is --config-dir, else $QSM_CONFIG_DIR, else ./config.
    """
    loaded = app.loaded
    files = {
        name: {"path": str(loaded.config_dir / name), "found": found} for name, found in loaded.files.items()
    }
    store = store_choice(loaded)
    rows = _rows(loaded, show, app.registry.secret_options() if show else {})
    if as_json:
        emit_json(
            {
                "config_dir": str(loaded.config_dir),
                "config_dir_source": loaded.config_dir_source,
                "files": files,
                "store": {k: v for k, v in store.items() if k != "text"},
                "settings": rows,
            }
        )
        return
    click.echo(f"config directory: {loaded.config_dir}  (from {loaded.config_dir_source})")
    for name, info in files.items():
        click.echo(f"  {name:<16} {'found' if info['found'] else 'missing':<8} {info['path']}")
    click.echo(f"store: {store['text']}")
    click.echo("")
    header = f"{'SETTING':<24} {'SOURCE':<16} {'VARIABLE':<26}"
    click.echo((header + (" VALUE" if show else "")).rstrip())
    for name, row in rows.items():
        line = f"{name:<24} {row['source']:<16} {row['variable']:<26}"
        if show:
            value = row["value"]
            line += " " + ("-" if value is None else str(value) if isinstance(value, str) else _json(value))
        click.echo(line.rstrip())


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def register(cli: click.Group) -> None:
    cli.add_command(config)
