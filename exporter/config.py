"""Export definitions: connections (where a Klaviyo key lives) and exports (segment ->
list, with the data mapping), validated in full at load.

Every problem in the document is reported at once, by export name, so a marketing team
fixes its file in one go; a document with any problem starts no run at all.

    {"connections": [{"name": "main", "display_name": "Klaviyo EU", "key_vault_secret": "klaviyo-api-key"}],
     "exports": [{"name": "vip", "connection": "main", "source": "vip/", "list_id": "Ab12Cd",
                  "mapping": {"email": "Email", "phone_number": "Phone", "properties.tier": "Tier"},
                  "enabled": true}]}

``source`` is a blob path in the segments container, or a folder (a prefix ending in
``/``): a CDM export folder (``model.json`` or ``manifest.cdm.json`` at its root; ``entity``
picks one of several), or a folder of refreshes, whose newest run is read (see
``exporter.sources.folders``).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exporter.errors import ConfigError
from exporter.mapping.consent import ConsentMapping
from exporter.mapping.fields import FieldMapping, typed_target
from exporter.sources.reach import OutOfReach, checked_blob_name, within
from exporter.sources.rows import FORMATS
from exporter.sync.plan import MODES
from exporter.verdict import DEFAULT_MAX_REJECTED_FRACTION

OBJECT_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
KEY_VERSION = re.compile(r"[0-9a-fA-F]{32}")
ACCOUNT_ID = re.compile(r"[A-Za-z0-9]{1,64}")
LIST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Klaviyo's are six letters and digits; never a path
EXPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")  # it names blob folders and URL segments
# An ``env`` connection may only name a variable meant for a Klaviyo key, never one of the
# app's own settings (its storage connection string holds an account key).
KEY_VARIABLE = re.compile(r"[A-Za-z0-9_]*KLAVIYO[A-Za-z0-9_]*", re.IGNORECASE)
PROTECTED_VARIABLES = re.compile(r"(?i)^(AzureWebJobs|AZURE_|WEBSITE|FUNCTIONS_|APPLICATIONINSIGHTS|APPSETTING_|MSI_|"
                                 r"IDENTITY_|CONTAINER_|KEY_VAULT)|CONNECTION|STORAGE")


@dataclass(frozen=True)
class Connection:
    name: str
    display_name: str
    key_vault_secret: str | None  # secret name in the app's Key Vault
    env: str | None  # or an environment variable holding the key (local runs)
    users: tuple[str, ...] = ()  # Entra object ids (users or groups) that may use it besides admins
    key_version: str | None = None  # the secret's version the API stored (None: its newest)
    klaviyo_account: str | None = None  # the Klaviyo account its key belongs to, as Klaviyo said when it was saved


@dataclass(frozen=True)
class ExportDefinition:
    name: str
    connection: Connection
    source: str
    list_id: str
    mapping: FieldMapping
    enabled: bool = True
    encoding: str = "utf-8"  # the segment files' text encoding
    format: str | None = None  # "csv" | "jsonl" | "parquet"; None: detected
    columns: list[str] | None = None  # column names for segment files without a header row
    entity: str | None = None  # the entity of a CDM folder source (default: its only one)
    settle_seconds: float = 60.0  # a folder's run of part files is complete once quiet this long
    mode: str = "add"  # add | mirror (also remove members who left the segment)
    full_every: int = 0  # every Nth run resends every member (0: only when asked, or the mapping changed)
    max_remove_fraction: float = 0.5  # mirror mode's guard: a run removing more of the list removes nothing
    max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION  # more rejected: the verdict says it did not get through
    clear_emptied: bool = False  # clear in Klaviyo a mapped value this export set that is empty now (opt-in)

    @property
    def is_prefix(self) -> bool:
        return self.source.endswith("/")

    def claims(self, blob_path: str) -> bool:
        """Is a blob at this path (inside the segments container) this export's segment?"""
        return within(self.source, blob_path)


class UnknownExport(ConfigError):
    def __init__(self, name: str, known: list[str]):
        self.known = known
        super().__init__(f"no export named {name!r}; known exports: {', '.join(known) or 'none'}")


class ConfigProblems(ConfigError):
    def __init__(self, origin: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"exports config {origin} has {len(problems)} problem(s): " + "; ".join(problems))


@dataclass(frozen=True)
class ExportsConfig:
    connections: dict[str, Connection]
    exports: dict[str, ExportDefinition]

    def export(self, name: str) -> ExportDefinition:
        try:
            return self.exports[name]
        except KeyError:
            raise UnknownExport(name, sorted(self.exports)) from None

    def exports_for_blob(self, blob_path: str) -> list[ExportDefinition]:
        """The exports a blob at this path belongs to: one, or each export of a CDM folder that
        several read (an entity each)."""
        return [e for e in self.exports.values() if e.claims(blob_path)]

    def enabled(self) -> list[ExportDefinition]:
        return [e for e in self.exports.values() if e.enabled]


def load_config_file(path: Path) -> ExportsConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read exports config {path}: {exc.strerror}") from None
    return parse_config(raw, str(path))


def parse_config(raw: bytes, origin: str) -> ExportsConfig:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigProblems(origin, [f"not valid JSON ({exc})"]) from None
    problems: list[str] = []
    if not isinstance(document, dict):
        raise ConfigProblems(origin, ["the document must be a JSON object with 'connections' and 'exports'"])
    connections = _connections(document.get("connections"), problems)
    exports = _exports(document.get("exports"), connections, problems)
    if problems:
        raise ConfigProblems(origin, problems)
    return ExportsConfig(connections, exports)


def connections_of(document: dict[str, Any]) -> dict[str, Connection]:
    """The document's well-formed connections, whatever is wrong elsewhere in it (the
    management API decides who may use what before the whole document is valid again)."""
    return _connections(document.get("connections"), [])


def _connections(items: Any, problems: list[str]) -> dict[str, Connection]:
    if not isinstance(items, list):
        problems.append("'connections' must be a list")
        return {}
    connections: dict[str, Connection] = {}
    for position, item in enumerate(items):
        where = f"connection #{position + 1}"
        if not isinstance(item, dict) or not _text(item.get("name")):
            problems.append(f"{where}: needs a 'name'")
            continue
        name = item["name"]
        where = f"connection {name!r}"
        if name in connections:
            problems.append(f"{where}: defined twice")
        secret, env = item.get("key_vault_secret"), item.get("env")
        if bool(_text(secret)) == bool(_text(env)):
            problems.append(f"{where}: give exactly one of 'key_vault_secret' (Azure) or 'env' (local runs)")
        elif isinstance(env, str) and env.strip() and (not KEY_VARIABLE.fullmatch(env) or PROTECTED_VARIABLES.search(env)):
            problems.append(f"{where}: 'env' must name a variable meant for a Klaviyo key, with KLAVIYO in its name "
                            "(e.g. KLAVIYO_API_KEY); the app's own settings are never read as a key")
        users, version = item.get("users", []), item.get("key_version")
        if not isinstance(users, list) or not all(isinstance(u, str) and OBJECT_ID.fullmatch(u) for u in users):
            problems.append(f"{where}: 'users' must be a list of Microsoft Entra object ids (users or groups)")
            users = []
        if version is not None and not (isinstance(version, str) and KEY_VERSION.fullmatch(version)):
            problems.append(f"{where}: 'key_version' must be a secret version id (32 hex digits)")
            version = None
        account = item.get("klaviyo_account")
        if account is not None and not (isinstance(account, str) and ACCOUNT_ID.fullmatch(account)):
            problems.append(f"{where}: 'klaviyo_account' must be a Klaviyo account id (letters and digits)")
            account = None
        connections[name] = Connection(name, str(item.get("display_name") or name), secret or None, env or None,
                                       tuple(u.lower() for u in users), version, account)
    return connections


def _exports(items: Any, connections: dict[str, Connection], problems: list[str]) -> dict[str, ExportDefinition]:
    if not isinstance(items, list):
        problems.append("'exports' must be a list")
        return {}
    exports: dict[str, ExportDefinition] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not _text(item.get("name")):
            problems.append(f"export #{position + 1}: needs a 'name'")
            continue
        name = item["name"]
        where = f"export {name!r}"
        before = len(problems)
        if not EXPORT_NAME.fullmatch(name):
            problems.append(f"{where}: a name is 1-63 letters, digits, '-' or '_', starting with a letter or digit")
        if name in exports:
            problems.append(f"{where}: defined twice")
        connection = connections.get(item.get("connection"))  # type: ignore[arg-type]
        if connection is None:
            known = ", ".join(sorted(connections)) or "none"
            problems.append(f"{where}: unknown connection {item.get('connection')!r} (known: {known})")
        source = item.get("source")
        try:
            checked_blob_name(source, prefix_allowed=True)
        except OutOfReach as exc:
            problems.append(f"{where}: 'source' must be a blob path or prefix inside the segments container: {exc}")
        list_id = item.get("list_id")
        if not isinstance(list_id, str) or not list_id.strip():
            problems.append(f"{where}: 'list_id' must be a non-empty string (got {type(list_id).__name__})")
        elif not LIST_ID.fullmatch(list_id):
            problems.append(f"{where}: 'list_id' must be a Klaviyo list id: letters and digits (Lists > the list > "
                            "Settings shows it)")
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{where}: 'enabled' must be true or false")
        encoding, format = _source_options(item, where, problems)
        columns = _columns(item.get("columns"), where, problems)
        entity = item.get("entity")
        if entity is not None and not _text(entity):
            problems.append(f"{where}: 'entity' must be the name of an entity in the source's CDM manifest")
        mode, full_every, max_remove = _sync_options(item, where, problems)
        settle = item.get("settle_seconds", 60)
        if type(settle) not in (int, float) or not 0 <= settle <= 3600:
            problems.append(f"{where}: 'settle_seconds' must be a number of seconds from 0 to 3600")
            settle = 60
        clear = item.get("clear_emptied", False)
        if not isinstance(clear, bool):
            problems.append(f"{where}: 'clear_emptied' must be true or false")
        max_rejected = item.get("max_rejected_fraction", DEFAULT_MAX_REJECTED_FRACTION)
        if type(max_rejected) not in (int, float) or not 0 <= max_rejected <= 1:
            problems.append(f"{where}: 'max_rejected_fraction' must be a number from 0 to 1")
        mapping = _mapping(item.get("mapping"), where, problems, _mapping_options(item, where, problems))
        if len(problems) == before and connection is not None and mapping is not None:
            exports[name] = ExportDefinition(name, connection, str(source), str(list_id), mapping, enabled,
                                             encoding, format, columns, entity, float(settle), mode, full_every,
                                             max_remove, float(max_rejected), clear)
    _overlapping_sources(exports, problems)
    _shared_mirror_lists(exports, problems)
    return exports


def _source_options(item: dict[str, Any], where: str, problems: list[str]) -> tuple[str, str | None]:
    encoding, format = item.get("encoding", "utf-8"), item.get("format")
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        problems.append(f"{where}: 'encoding' {encoding!r} is not a text encoding Python knows (e.g. utf-8, cp1252)")
        encoding = "utf-8"
    if format is not None and format not in FORMATS:
        problems.append(f"{where}: 'format' must be one of {', '.join(FORMATS)} (or left out to detect it)")
        format = None
    return encoding, format


def _sync_options(item: dict[str, Any], where: str, problems: list[str]) -> tuple[str, int, float]:
    mode, full_every, max_remove = item.get("mode", "add"), item.get("full_every", 0), item.get("max_remove_fraction", 0.5)
    if mode not in MODES:
        problems.append(f"{where}: 'mode' must be \"add\" (the default) or \"mirror\" (also remove leavers)")
        mode = "add"
    if type(full_every) is not int or full_every < 0:
        problems.append(f"{where}: 'full_every' must be a whole number of runs (0: never by itself)")
        full_every = 0
    if type(max_remove) not in (int, float) or not 0 <= max_remove <= 1:
        problems.append(f"{where}: 'max_remove_fraction' must be a number from 0 to 1")
        max_remove = 0.5
    return mode, full_every, float(max_remove)


def _columns(value: Any, where: str, problems: list[str]) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(_text(c) for c in value) or len(set(value)) != len(value):
        problems.append(f"{where}: 'columns' must be a list of distinct column names (for files without a header row)")
        return None
    return [c.strip() for c in value]


def _mapping_options(item: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    options = {"phone_region": item.get("phone_region"), "invalid_fields": item.get("invalid_fields", "drop")}
    if options["phone_region"] is not None and not isinstance(options["phone_region"], str):
        problems.append(f"{where}: 'phone_region' must be a two-letter region such as \"GB\"")
        options["phone_region"] = None
    identity = item.get("identity", "email")
    identity = [identity] if isinstance(identity, str) else identity
    if not isinstance(identity, list) or not all(isinstance(kind, str) for kind in identity):
        problems.append(f"{where}: 'identity' is \"email\", \"phone_number\", \"external_id\" or a list of them")
    else:
        options["identity"] = tuple(identity)
    if item.get("consent") is not None:
        try:
            options["consent"] = ConsentMapping.from_document(item["consent"])
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    return options


def _mapping(value: Any, where: str, problems: list[str], options: dict[str, Any]) -> FieldMapping | None:
    needs_email = "email" in options.get("identity", ("email",))
    if not isinstance(value, dict) or (needs_email and not _text(value.get("email"))) \
            or ("email" in value and not _text(value["email"])):
        problems.append(f"{where}: 'mapping' must name the email column, e.g. {{\"email\": \"Email\"}}")
        return None
    fields: dict[str, str] = {}
    types: dict[str, str] = {}
    ok = True
    for target, column in value.items():
        if target == "email":
            continue
        if not _text(column):
            problems.append(f"{where}: mapping for {target!r} must be a column name")
            ok = False
            continue
        try:
            canonical, kind = typed_target(target)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
            ok = False
            continue
        fields[canonical] = column
        if kind is not None:
            types[canonical] = kind
    if not ok:
        return None
    try:
        return FieldMapping(value.get("email", ""), fields, **options, types=types)
    except ConfigError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _overlapping_sources(exports: dict[str, ExportDefinition], problems: list[str]) -> None:
    """Two exports must never claim the same file (a drop would run both, racing), except the
    exports of one CDM folder that each read another entity of it: one manifest event then
    starts each of them, each with its own lock, run and report."""
    items = list(exports.values())
    for i, first in enumerate(items):
        for second in items[i + 1:]:
            if first.source == second.source and first.is_prefix and first.entity and second.entity \
                    and first.entity != second.entity:
                continue
            if first.claims(second.source) or second.claims(first.source) or first.source == second.source:
                same_entity = (f" and entity {first.entity!r} (exports may share a CDM folder only when each names "
                               "another entity)") if first.entity and first.entity == second.entity else ""
                problems.append(f"exports {first.name!r} and {second.name!r} are both bound to {second.source!r}"
                                f"{same_entity}")


def _shared_mirror_lists(exports: dict[str, ExportDefinition], problems: list[str]) -> None:
    """A mirror export owns its list: another export adding to the same list would see its
    members removed by the mirror, and, counting them unchanged in its own snapshot, never
    add them back. Two add exports may share a list."""
    by_list: dict[str, list[ExportDefinition]] = {}
    for export in exports.values():
        by_list.setdefault(export.list_id, []).append(export)
    for list_id, sharing in by_list.items():
        mirrors = [export.name for export in sharing if export.mode == "mirror"]
        if mirrors and len(sharing) > 1:
            others = [export.name for export in sharing if export.name != mirrors[0]]
            problems.append(f"export {mirrors[0]!r} mirrors list {list_id!r}, which export(s) "
                            f"{', '.join(map(repr, others))} also use; a mirrored list must have one export only "
                            "(give the others their own list, or make the mirror an add export)")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
