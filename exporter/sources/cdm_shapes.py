"""The shapes of CDM manifests that writers really produce, beyond a flat list of
attributes and of partitions:

- ``attributeGroupReference`` in an entity's ``hasAttributes``: a group's ``members`` inline,
  or a reference (``"VIP/hasAttributes/attributesAddedAtThisScope"``) to a group defined in
  the same document (``definitions`` item with that ``attributeGroupName``); groups nest, to
  ``MAX_GROUP_DEPTH``;
- ``dataPartitionPatterns`` (what Spark and Synapse write): a ``rootLocation`` below the
  manifest's folder and a ``regularExpression`` or ``globPattern`` that the files' paths below
  it must match. The root is confined like a partition's location; the regular expression
  runs on RE2 (through Arrow), whose time is linear in the path, so a hostile pattern cannot
  hang the run; the newest run of the matching files is read, as in a plain folder;
- ``quoteStyle`` / ``csvStyle``: ``QuoteStyle.Csv`` (quotes enclose fields) or
  ``QuoteStyle.None`` (a quote is a character like any other); either ``CsvStyle``.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.errors import SourceError
from exporter.mapping.types import CDM_TYPES
from exporter.sources.folders import Entry

MAX_GROUP_DEPTH = 8
MAX_PATTERN_CHARS = 1_000
QUOTE_STYLES = {"quotestyle.csv": True, "quotestyle.none": False}
CSV_STYLES = ("csvstyle.quotealways", "csvstyle.quoteafterdelimiter")


def attributes_typed(attributes: Any, where: str, definitions: list[dict[str, Any]] | None = None,
                     depth: int = 0) -> dict[str, str | None]:
    """Column name -> the type its ``dataType`` (model.json) or ``dataFormat`` (a CDM schema
    document) states, when it is one this reads (``types.CDM_TYPES``)."""
    if not isinstance(attributes, list) or not all(isinstance(item, dict) for item in attributes):
        raise SourceError(f"{where} 'attributes' must be a list of objects")
    found: dict[str, str | None] = {}
    for item in attributes:
        group = item.get("attributeGroupReference")
        if group is not None:
            found.update(_group_members(group, where, definitions, depth))
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SourceError(f"{where} must list its attributes, each with a non-empty 'name' "
                              "(or an 'attributeGroupReference')")
        stated = item.get("dataType", item.get("dataFormat"))
        found[name.strip()] = CDM_TYPES.get(stated.lower()) if isinstance(stated, str) else None
    if not found:
        raise SourceError(f"{where} must list its attributes, each with a non-empty 'name'")
    return found


def _group_members(group: Any, where: str, definitions: list[dict[str, Any]] | None,
                   depth: int) -> dict[str, str | None]:
    if depth >= MAX_GROUP_DEPTH:
        raise SourceError(f"{where}: attribute groups nest deeper than {MAX_GROUP_DEPTH} levels")
    if isinstance(group, dict) and "members" in group:
        label = group.get("attributeGroupName")
        return attributes_typed(group["members"], f"{where} group {str(label)[:60]!r}", definitions, depth + 1)
    if isinstance(group, str):
        wanted = group.rstrip("/").rpartition("/")[2]
        found = next((d for d in definitions or [] if d.get("attributeGroupName") == wanted), None)
        if found is None:
            raise SourceError(f"{where}: attribute group reference {group[:80]!r} names no attribute group defined "
                              "in the document")
        return attributes_typed(found.get("members"), f"{where} group {wanted[:60]!r}", definitions, depth + 1)
    raise SourceError(f"{where}: an 'attributeGroupReference' must be a group with 'members' or the path of a group "
                      "defined in the document")


def quoting(style: Any, csv_style: Any, where: str) -> bool:
    """Whether quotes enclose fields (``QuoteStyle.Csv``, the default) or are plain characters."""
    if csv_style is not None and str(csv_style).lower() not in CSV_STYLES:
        raise SourceError(f"{where}: csvStyle {str(csv_style)[:40]!r} is not one this reads "
                          "(CsvStyle.QuoteAlways, CsvStyle.QuoteAfterDelimiter)")
    if style is None:
        return True
    quoted = QUOTE_STYLES.get(str(style).lower())
    if quoted is None:
        raise SourceError(f"{where}: quoteStyle {str(style)[:40]!r} is not one this reads "
                          "(QuoteStyle.Csv, QuoteStyle.None)")
    return quoted


def glob_regex(pattern: str) -> str:
    """A CDM glob (``/**/VIP_*.csv``) as a whole-path regular expression: ``**`` any folders,
    ``*`` and ``?`` within one name, everything else literal."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "^" + "".join(out) + "$"


def pattern_matches(root: str, pattern: dict[str, Any], entries: dict[str, Entry], where: str) -> dict[str, Entry]:
    """The files below ``root`` (a checked plain path, '' for the manifest's folder) whose path
    below it (with a leading '/') matches the pattern's regular expression or glob."""
    regex, glob = pattern.get("regularExpression"), pattern.get("globPattern")
    if (regex is None) == (glob is None) or not isinstance(regex if regex is not None else glob, str):
        raise SourceError(f"{where}: a data partition pattern needs one 'regularExpression' or 'globPattern'")
    expression = regex if isinstance(regex, str) else glob_regex(str(glob))
    if len(expression) > MAX_PATTERN_CHARS:
        raise SourceError(f"{where}: a data partition pattern is longer than {MAX_PATTERN_CHARS} characters")
    prefix = root.strip("/") + "/" if root.strip("/") else ""
    below = [name for name in entries if name.startswith(prefix)]
    if not below:
        return {}
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        matched = pc.match_substring_regex(pa.array(["/" + name[len(prefix):] for name in below]), expression)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(f"{where}: a data partition pattern is not a regular expression this reads ({exc})") from None
    return {name: entries[name] for name, hit in zip(below, matched.to_pylist(), strict=True) if hit}
