"""CDM export folders: ``model.json`` (or the newer ``manifest.cdm.json``) names an entity's
columns and the part files ("partitions") of its latest run.

A manifest is untrusted input. Its partition locations are absolute URLs of wherever the
platform wrote them, so each is resolved by its *path* only, against the files that lie
below the folder holding the manifest: the longest tail of the location's path that names
a file in that folder is the partition. A location that names nothing below the folder
(another account, container or export, or a file that does not exist) is refused before
anything is read, so a manifest can never point a run outside its own folder. If the
manifest lists partitions of several runs (subfolders), the newest run is exported.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from exporter.errors import SourceError
from exporter.sources.cdm_shapes import attributes_typed, pattern_matches, quoting
from exporter.sources.folders import Entry, Folder, natural_key, newest_run
from exporter.sources.reach import OutOfReach, checked_blob_name

MANIFESTS = ("model.json", "manifest.cdm.json")
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Partition:
    """One part file of the run, with how to read it."""

    entry: Entry
    columns: list[str] | None  # None: the file has a header row
    delimiter: str | None
    encoding: str | None
    refreshed: datetime | None = None  # the partition's refreshTime, as the manifest states it
    quoted: bool = True  # quotes enclose fields (QuoteStyle.Csv), or are plain characters (QuoteStyle.None)
    types: dict[str, str] | None = None  # column -> the type the manifest states (``mapping.types``)


@dataclass(frozen=True)
class _Listed:
    location: str
    headers: bool
    delimiter: str | None
    encoding: str | None
    refreshed: datetime | None = None
    quoted: bool = True


def manifest_name(entries: dict[str, Entry]) -> str | None:
    return next((name for name in MANIFESTS if name in entries), None)


async def cdm_run(folder: Folder, entries: dict[str, Entry], manifest: str, entity: str | None) -> list[Partition]:
    """The partitions of the newest run of ``entity`` (default: the only one) that the
    manifest lists, each resolved to a file below the folder; ``SourceError`` naming the
    manifest and the problem otherwise."""
    document = _json(await folder.read(manifest, MAX_MANIFEST_BYTES), manifest)
    if manifest == "model.json":
        found, columns, listed = _model_json(document, entity)
    else:
        found, columns, listed = await _manifest_cdm(folder, entries, document, entity)
    if not listed:
        raise SourceError(f"{manifest}: entity {found!r} lists no partitions (part files)")
    partitions = []
    for number, item in enumerate(listed, 1):
        resolved = _resolve(item.location, entries)
        if resolved is None:
            raise SourceError(f"{manifest}: partition {number} of entity {found!r} ({_base(item.location)}) is not "
                              f"in {folder.description}: no file below that folder matches its location")
        stated = {column: kind for column, kind in columns.items() if kind} or None
        partitions.append(Partition(resolved, None if item.headers else list(columns), item.delimiter, item.encoding,
                                    item.refreshed, item.quoted, stated))
    return _newest(partitions)


def _newest(partitions: list[Partition]) -> list[Partition]:
    """The run to read. A manifest whose partitions all carry a refresh time may list older
    runs too: the partitions of the newest refresh time are the run, in whichever subfolders
    they sit. Without refresh times on every partition, nothing tells runs apart safely, so
    every listed partition is read: reading too much only adds, while leaving a part out
    would make mirror mode remove its members."""
    times = {p.refreshed for p in partitions}
    run = partitions
    if None not in times:
        newest = max(times)  # type: ignore[type-var]
        run = [p for p in partitions if p.refreshed == newest]
    unique = {p.entry.name: p for p in run}
    return [unique[name] for name in sorted(unique, key=natural_key)]


def _refresh_time(value: Any, where: str) -> datetime | None:
    """A partition's refreshTime (ISO 8601, as CDM writes it), or None when absent."""
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None:
        raise SourceError(f"{where}: a partition has a 'refreshTime' that is not an ISO 8601 time")
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _model_json(document: Any, wanted: str | None) -> tuple[str, dict[str, str | None], list[_Listed]]:
    entity = _entity(document.get("entities") if isinstance(document, dict) else None, "name", wanted, "model.json")
    name = entity["name"]
    columns = attributes_typed(entity.get("attributes"), f"model.json: entity {name!r}")
    listed = []
    for item in _list(entity.get("partitions"), f"model.json: entity {name!r} 'partitions'"):
        settings = item.get("fileFormatSettings") or {}
        if not isinstance(settings, dict):
            raise SourceError(f"model.json: a partition of entity {name!r} has 'fileFormatSettings' that is not an object")
        listed.append(_Listed(_location(item.get("location"), "model.json"), settings.get("columnHeaders") is True,
                              _delimiter(settings.get("delimiter"), "model.json"),
                              _encoding(settings.get("encoding"), "model.json"),
                              _refresh_time(item.get("refreshTime"), "model.json"),
                              quoting(settings.get("quoteStyle"), settings.get("csvStyle"), "model.json")))
    return name, columns, listed


async def _manifest_cdm(folder: Folder, entries: dict[str, Entry], document: Any,
                        wanted: str | None) -> tuple[str, dict[str, str | None], list[_Listed]]:
    where = "manifest.cdm.json"
    entity = _entity(document.get("entities") if isinstance(document, dict) else None, "entityName", wanted, where)
    name = entity["entityName"]
    columns = await _cdm_attributes(folder, entity, name)
    partitions, patterns = entity.get("dataPartitions"), entity.get("dataPartitionPatterns")
    listed = []
    if partitions is not None or patterns is None:
        for item in _list(partitions, f"{where}: entity {name!r} 'dataPartitions'"):
            listed.append(_listed(_location(item.get("location"), where), item, where))
    if patterns is not None:
        for pattern in _list(patterns, f"{where}: entity {name!r} 'dataPartitionPatterns'"):
            root_value = pattern.get("rootLocation")
            root = "" if root_value is None or (isinstance(root_value, str) and not root_value.strip("/")) else \
                _location(root_value.rstrip("/") if isinstance(root_value, str) else root_value, where)
            matched = pattern_matches(root, pattern, entries, f"{where}: entity {name!r}")
            if matched:  # the newest run of the files the pattern matches, as in a plain folder
                listed += [_listed(entry.name, pattern, where) for entry in newest_run(matched, folder.description)]
    return name, columns, listed


def _listed(location: str, item: dict[str, Any], where: str) -> _Listed:
    """A partition (or a pattern's file) with the format its traits state."""
    arguments = _trait_arguments(item.get("exhibitsTraits"), where)
    return _Listed(location, str(arguments.get("columnHeaders")).lower() == "true",
                   _delimiter(arguments.get("delimiter"), where), _encoding(arguments.get("encoding"), where),
                   _refresh_time(item.get("refreshTime"), where),
                   quoting(arguments.get("quoteStyle"), arguments.get("csvStyle"), where))


async def _cdm_attributes(folder: Folder, entity: dict[str, Any], name: str) -> dict[str, str | None]:
    """A manifest's entity points at its schema document (``Entity.cdm.json/Entity``) in the same folder."""
    path = entity.get("entityPath")
    if not isinstance(path, str) or ".cdm.json" not in path:
        raise SourceError(f"manifest.cdm.json: entity {name!r} has no 'entityPath' to its schema document")
    document_name = path.split(".cdm.json", 1)[0] + ".cdm.json"
    if "://" in document_name:
        raise SourceError(f"manifest.cdm.json: entity {name!r} has an 'entityPath' outside its folder (a URL)")
    document_name = document_name.split(":", 1)[-1].lstrip("/")  # a corpus adapter's prefix ("local:/")
    try:
        checked_blob_name(document_name)
    except OutOfReach:
        raise SourceError(f"manifest.cdm.json: entity {name!r} has an 'entityPath' outside its folder") from None
    schema = _json(await folder.read(document_name, MAX_MANIFEST_BYTES), document_name)
    definitions = _list(schema.get("definitions") if isinstance(schema, dict) else None, f"{document_name} 'definitions'")
    definition = next((d for d in definitions if d.get("entityName") == name), None)
    if definition is None:
        raise SourceError(f"{document_name}: no definition of entity {name!r}")
    return attributes_typed(definition.get("hasAttributes"), f"{document_name}: entity {name!r}", definitions)


def _entity(entities: Any, key: str, wanted: str | None, where: str) -> dict[str, Any]:
    items = [e for e in _list(entities, f"{where} 'entities'") if isinstance(e.get(key), str)]
    if not items:
        raise SourceError(f"{where} lists no entities")
    names = [e[key] for e in items]
    if wanted is None:
        if len(items) > 1:
            raise SourceError(f"{where} holds {len(items)} entities ({', '.join(map(repr, names[:20]))}); "
                              "name one with --entity (\"entity\" in an export)")
        return items[0]
    for item in items:
        if item[key] == wanted:
            return item
    raise SourceError(f"{where} has no entity {wanted!r}; entities: {', '.join(map(repr, names[:20]))}")


def _trait_arguments(traits: Any, where: str) -> dict[str, Any]:
    for trait in traits if isinstance(traits, list) else []:
        if isinstance(trait, dict) and str(trait.get("traitReference", "")).startswith("is.partition.format"):
            arguments = trait.get("arguments")
            if arguments is None:
                return {}
            if not isinstance(arguments, list):
                raise SourceError(f"{where}: the partition format trait's 'arguments' must be a list of "
                                  f"{{\"name\", \"value\"}} objects (got a {type(arguments).__name__})")
            return {str(a.get("name")): a.get("value") for a in arguments if isinstance(a, dict)}
    return {}


def _resolve(location: str, entries: dict[str, Entry]) -> Entry | None:
    """The file below the folder named by the longest tail of ``location``'s path."""
    segments = location.split("/")
    for start in range(len(segments)):
        entry = entries.get("/".join(segments[start:]))
        if entry is not None:
            return entry
    return None


def _location(value: Any, where: str) -> str:
    """A partition's location as a plain '/'-separated path (scheme, host and query dropped);
    a path that could climb or smuggle a separator is refused outright."""
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: a partition has no 'location'")
    parts = urlsplit(value.strip())
    path = parts.path if parts.scheme in ("http", "https", "abfss", "adls", "wasbs", "local") or parts.netloc else value
    path = path.split(":", 1)[-1] if ":" in path.split("/", 1)[0] else path  # a corpus adapter prefix ("adls:")
    try:
        checked_blob_name(path.lstrip("/"))  # before decoding: %2f and friends are refused, not decoded
        decoded = unquote(path).lstrip("/")
        checked_blob_name(decoded)
    except OutOfReach as exc:
        raise SourceError(f"{where}: a partition location is not a plain path ({exc})") from None
    return decoded


def _delimiter(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 1 or value in "\"\r\n":
        raise SourceError(f"{where}: a partition's delimiter must be one character other than a quote or line end")
    return value


def _encoding(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        return codecs.lookup(str(value)).name
    except LookupError:
        raise SourceError(f"{where}: a partition's encoding {str(value)[:40]!r} is not one Python knows") from None


def _list(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SourceError(f"{where} must be a list of objects")
    return value


def _json(raw: bytes, name: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{name} is not valid JSON ({exc})") from None


def _base(location: str) -> str:
    return location.rpartition("/")[2][:100]
