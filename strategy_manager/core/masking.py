"""What may be shown of settings and of any text: secrets are masked by where they
sit, never guessed from the words around them.

One module, used by every output (the CLI's ``config``, ``status``, ``state show``,
logs, errors and JSON, and any server that shows the same data):

* :func:`mask_uri` shows a URI's scheme, hosts, database and harmless options, and
  masks the user info and every other option value. A URI that does not parse
  cleanly (a typo such as ``mongodb:/user:pw@host``) is shown as its scheme alone.
* :func:`settings_view` gives every setting as it may be printed: ``mongo_uri``
  through :func:`mask_uri`; in ``engine_options``, every value under
  ``<engine>.gateways`` and under the places an engine plugin declares secret
  (``secret_options`` in ``qsm_engine_info``) is masked, as are the credentials of
  any URI and, as a backstop, values under keys that name a secret (``password``,
  ``pwd``, ``token``, ``密码`` ...). In ``accounts``, every value but each
  account's ``engine`` is masked: an account's settings are its connection.
* :class:`Redactor` knows the secret values of the settings and masks them, in any
  of the forms output takes (plain, JSON-escaped, ``repr``, percent-encoded), in
  free text: error messages, status reasons, log lines, tracebacks. It also masks
  any URI it finds in the text. :class:`RedactingFilter` applies it to log records.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from strategy_manager.core.settings import Settings

MASK = "***"

#: Connection-string options shown with their values; every other option's value is
#: masked (``tlsCertificateKeyFilePassword``, ``authMechanismProperties`` ...).
SAFE_URI_OPTIONS = frozenset(
    name.lower()
    for name in (
        "appName",
        "authSource",
        "authMechanism",
        "compressors",
        "connectTimeoutMS",
        "directConnection",
        "heartbeatFrequencyMS",
        "journal",
        "loadBalanced",
        "localThresholdMS",
        "maxConnecting",
        "maxIdleTimeMS",
        "maxPoolSize",
        "maxStalenessSeconds",
        "minPoolSize",
        "readConcernLevel",
        "readPreference",
        "replicaSet",
        "retryReads",
        "retryWrites",
        "serverMonitoringMode",
        "serverSelectionTimeoutMS",
        "serverSelectionTryOnce",
        "socketTimeoutMS",
        "srvMaxHosts",
        "srvServiceName",
        "ssl",
        "timeoutMS",
        "tls",
        "tlsAllowInvalidCertificates",
        "tlsAllowInvalidHostnames",
        "tlsInsecure",
        "uuidRepresentation",
        "w",
        "waitQueueTimeoutMS",
        "wTimeoutMS",
        "zlibCompressionLevel",
    )
)

#: Settings that are secrets as a whole: never shown, and masked in any text.
SECRET_SETTINGS = ("http_token",)

#: Places in ``engine_options`` (below the engine name) masked for every engine.
ALWAYS_SECRET: tuple[tuple[str, ...], ...] = (("gateways",),)

#: Keys masked wherever they sit in ``engine_options``, as a backstop for engines that
#: do not declare their secret places; the positions above are the rule.
SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|credential|bearer|auth|api[_-]?key|private[_-]?key|access[_-]?key"
    r"|密码|口令|授权|令牌|密钥|私钥",
    re.IGNORECASE,
)

#: Shortest value the Redactor looks for in free text: shorter ones would mask
#: ordinary words and numbers everywhere. (Structured output masks by position and
#: has no such limit.)
MIN_SECRET = 4

_URI = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)"
    r"(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?",
    re.DOTALL,
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,30}):")
_HOST = re.compile(r"(?:[A-Za-z0-9._%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_PATH = re.compile(r"(?:/[A-Za-z0-9._%~+-]*)+")
_OPTION_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_OPTION_VALUE = re.compile(r"[A-Za-z0-9._,:-]*")
#: Something URI-like inside free text.
_URI_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*:/+[^\s'\"<>`]*[^\s'\"<>`.,;)\]]")


def mask_uri(uri: Any) -> str:
    """``mongodb://user:pw@h1,h2/db?tls=true&tlsCertificateKeyFilePassword=x`` ->
    ``mongodb://***@h1,h2/db?tls=true&tlsCertificateKeyFilePassword=***``."""
    if not isinstance(uri, str):
        return MASK
    match = _URI.fullmatch(uri)
    rest = uri[match.end("authority") :] if match else ""
    if match is None or "@" in rest:  # unparseable, or a password holding '/', '?' or '#'
        scheme = _SCHEME.match(uri)
        return f"{scheme.group(1)}:{MASK}" if scheme else MASK
    _userinfo, at, hosts = match["authority"].rpartition("@")
    shown = match["scheme"] + "://" + (f"{MASK}@" if at else "")
    shown += ",".join(h if _HOST.fullmatch(h) else MASK for h in hosts.split(",")) if hosts else ""
    path = match["path"]
    if path:
        shown += path if _PATH.fullmatch(path) else "/" + MASK
    if match["query"] is not None:
        shown += "?" + "&".join(_option(o) for o in re.split("[&;]", match["query"]) if o)
    if match["fragment"] is not None:
        shown += "#" + MASK
    return shown


def _option(option: str) -> str:
    name, eq, value = option.partition("=")
    if not eq or not _OPTION_NAME.fullmatch(name):
        return MASK
    if name.lower() in SAFE_URI_OPTIONS and _OPTION_VALUE.fullmatch(value):
        return option
    return f"{name}={MASK}"


def uri_secrets(uri: str) -> list[str]:
    """The parts of ``uri`` that must not appear in output (for :class:`Redactor`)."""
    if mask_uri(uri) == uri:
        return []
    match = _URI.fullmatch(uri)
    if match is None or "@" in uri[match.end("authority") :]:
        scheme = _SCHEME.match(uri)
        rest = uri[scheme.end() :] if scheme else uri
        return [uri, rest, *re.split(r"[:/@?&=,;#]+", rest)]
    found = [uri]
    userinfo, at, _hosts = match["authority"].rpartition("@")
    if at:
        found += [userinfo, *userinfo.split(":", 1)]
    for option in re.split("[&;]", match["query"] or ""):
        name, eq, value = option.partition("=")
        if not eq:
            found.append(option)
        elif name.lower() not in SAFE_URI_OPTIONS:
            found += [value, *re.split(r"[:,]", value)]
    if match["fragment"]:
        found.append(match["fragment"])
    return found


# -- settings by position ----------------------------------------------------------------
def _is_secret_path(path: Sequence[str], secret: Iterable[Sequence[str]]) -> bool:
    if any(SECRET_NAME.search(key) for key in path[1:]):  # below the engine's name
        return True
    return any(
        len(path) >= len(rule) and all(r in ("*", p) for r, p in zip(rule, path, strict=False))
        for rule in secret
    )


def _mask_tree(value: Any, path: tuple[str, ...], secret: Sequence[Sequence[str]]) -> Any:
    if _is_secret_path(path, secret):
        if isinstance(value, Mapping):
            return {str(k): _mask_tree(v, (*path, str(k)), secret) for k, v in value.items()}
        return value if value in (None, "", [], {}) else MASK
    if isinstance(value, Mapping):
        return {str(k): _mask_tree(v, (*path, str(k)), secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_tree(v, path, secret) for v in value]
    if isinstance(value, str) and _URI_IN_TEXT.search(value):
        return _URI_IN_TEXT.sub(lambda m: mask_uri(m.group()), value)
    return value


def secret_rules(declared: Mapping[str, Iterable[Sequence[str]]] | None = None) -> list[tuple[str, ...]]:
    """Paths in ``engine_options`` that hold secrets: ``<engine>.gateways`` for every
    engine, and what each engine declares (``{engine: [path, ...]}``)."""
    rules = [("*", *rule) for rule in ALWAYS_SECRET]
    for engine, paths in (declared or {}).items():
        rules += [(engine, *map(str, path)) for path in paths]
    return rules


def masked_options(
    engine_options: Mapping[str, Any], declared: Mapping[str, Iterable[Sequence[str]]] | None = None
) -> dict[str, Any]:
    """``engine_options`` with every secret place masked."""
    return _mask_tree(engine_options, (), secret_rules(declared))  # type: ignore[no-any-return]


def masked_accounts(accounts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``accounts`` setting with every value but each account's ``engine`` masked
    (keys stay, so the shape of an account's settings can be checked)."""
    return {
        str(name): {
            str(key): (item if key == "engine" else _mask_tree(item, ("*", "*"), [("*",)]))
            for key, item in definition.items()
        }
        if isinstance(definition, Mapping)
        else MASK
        for name, definition in accounts.items()
    }


def account_secrets(accounts: Mapping[str, Any]) -> list[str]:
    """Every value of the ``accounts`` setting but the engines' names, for :class:`Redactor`."""
    found: list[str] = []
    for definition in accounts.values():
        if isinstance(definition, Mapping):
            found += [v for key, item in definition.items() if key != "engine" for v in _leaves(item)]
        else:
            found += list(_leaves(definition))
    return found


def settings_view(
    settings: Settings, declared: Mapping[str, Iterable[Sequence[str]]] | None = None
) -> dict[str, Any]:
    """Every setting as it may be printed: plain JSON data with the secrets masked."""
    import attrs

    view: dict[str, Any] = {}
    for f in attrs.fields(type(settings)):
        value = getattr(settings, f.name)
        if f.name == "mongo_uri":
            view[f.name] = None if value is None else mask_uri(value)
        elif f.name == "engine_options":
            view[f.name] = masked_options(value, declared)
        elif f.name == "accounts":
            view[f.name] = masked_accounts(value)
        elif f.name in SECRET_SETTINGS:
            view[f.name] = None if value is None else MASK
        else:
            view[f.name] = _plain(value)
    return view


def masked_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A strategy document as it may be shown (by a server, say): a document holds no
    credential, but as a backstop every value under a key that names a secret is
    masked, at any depth, and so are the credentials of any URI in it."""
    return _mask_tree(document, ("document",), ())  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# -- free text ---------------------------------------------------------------------------
def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _secret_values(value: Any, path: tuple[str, ...], rules: Sequence[Sequence[str]]) -> Iterable[str]:
    if _is_secret_path(path, rules):
        yield from _leaves(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secret_values(item, (*path, str(key)), rules)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_values(item, path, rules)
    elif isinstance(value, str):
        for match in _URI_IN_TEXT.finditer(value):
            yield from uri_secrets(match.group())


def _forms(secret: str) -> set[str]:
    """The ways ``secret`` may be written in output."""
    return {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        unquote(secret),
    }


class Redactor:
    """Masks known secret values, and the credentials of any URI, in free text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for s in secrets if len(s) >= MIN_SECRET for form in _forms(s)}
        forms = {f for f in forms if len(f) >= MIN_SECRET and f != MASK}
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )

    @classmethod
    def for_settings(
        cls, settings: Settings, declared: Mapping[str, Iterable[Sequence[str]]] | None = None
    ) -> Redactor:
        """A redactor for every secret in ``settings``: the MongoDB URI's credentials
        and every value at a secret place of ``engine_options``."""
        secrets: list[str] = []
        if settings.mongo_uri:
            secrets += uri_secrets(settings.mongo_uri)
        secrets += _secret_values(settings.engine_options, (), secret_rules(declared))
        secrets += account_secrets(settings.accounts)
        secrets += [v for v in (getattr(settings, name, None) for name in SECRET_SETTINGS) if v]
        return cls(secrets)

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        if "/" in text:
            text = _URI_IN_TEXT.sub(lambda m: mask_uri(m.group()), text)
        return text

    def data(self, value: Any) -> Any:
        """Plain data (a status record, a JSON report) with every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """Put on a handler: every record it emits is formatted, then redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True
