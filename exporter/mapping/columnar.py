"""The columnar path: a block of rows as Arrow string columns, mapped and serialized with
vectorized kernels (trim, the email and phone rules as RE2 regexes, JSON assembled by
string joins), so the per-row cost is a few C loops rather than ten Python objects.

It vouches only for rows it can map exactly as ``ProfileMapper.map_row`` would: a valid
email, every text field within its limit, a phone that is empty or already international.
Any other row (an empty or invalid email, a long name, a local-format phone, a profile
over 100 KB) is handed to ``map_row`` itself, so every reject reason and warning is the
row path's own. A block the columnar path cannot read at all (undecodable bytes, control
characters, ragged rows) never gets here: ``engine.py`` sends it down the row path.

``pyarrow`` is imported by this module only, and this module only by the engine that
reads rows, so the HTTP, timer and blob-trigger functions never load it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from exporter.allocator import arrow_on_c_allocator
from exporter.klaviyo.limits import MAX_PROFILE_BYTES
from exporter.mapping.chunks import MappedChunk, oversized
from exporter.mapping.fields import LOCATION_PREFIX, PROPERTY_PREFIX, FieldMapping
from exporter.mapping.mapper import MAX_ATTRIBUTE_CHARS, MappedProfile, ProfileMapper
from exporter.mapping.validate import MAX_EMAIL_CHARS, MAX_LOCAL_PART_CHARS
from exporter.rejects import Reject
from exporter.sources.arrow_values import python_rows
from exporter.sources.rows import RowBlock
from exporter.sync.delta import Delta

# What ``str.strip()`` removes: the characters ``str.isspace()`` calls space, spelled out so
# the trim is Python's by construction, not by Arrow's idea of whitespace (a test checks it).
PYTHON_SPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# validate._EMAIL without lookarounds (RE2 has none): dot-separated atoms cannot start or
# end with a dot or hold two; the local part's 64 characters are checked apart.
EMAIL_RE2 = (rf"^{_ATOM}(?:\.{_ATOM})*"
             r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$")
# A subset of validate._PHONE_PUNCTUATION: a number left as "+digits" after removing these
# is what normalize_phone's fast path returns; anything else goes to normalize_phone itself.
_PHONE_PUNCTUATION = r"[ \t\x0b\x0c().\-/]"
_E164 = r"^\+[1-9][0-9]{7,14}$"
_SEPARATOR = pa.scalar("\x1f")  # between a row's raw values, for its fingerprint
_CONTROL = bytes(range(0x0A)) + bytes(range(0x0B, 0x20))  # what JSON escapes, but the line ends
_CONTROL_RE2 = "[\\x00-\\x1f]"  # the same in a Parquet value, where a line end is a value's own


# Constants as Arrow scalars: a Python value given to a kernel is converted on every call,
# at about 60 µs each here (the conversion tries to import an optional library each time).
_EMPTY = pa.scalar("")
_QUOTE = pa.scalar('"')
_TRUE = pa.scalar(True)
_EMAIL_START = pa.scalar('{"type":"profile","attributes":{"email":"')
_BODY_END = pa.scalar("}},")
_BRACE_END = pa.scalar("}")
_MAX_EMAIL = pa.scalar(MAX_EMAIL_CHARS, pa.int32())
_MAX_LOCAL = pa.scalar(MAX_LOCAL_PART_CHARS, pa.int32())
_MAX_CHARS = pa.scalar(MAX_ATTRIBUTE_CHARS, pa.int32())
_MAX_BODY = pa.scalar(MAX_PROFILE_BYTES + 1, pa.int32())  # + its comma
_PHONE_START = pa.scalar(',"phone_number":"')


@dataclass(frozen=True)
class _Field:
    column: int  # position in the block's columns
    start: Any  # Arrow scalar: a comma, the attribute's JSON key, then ':"'
    first: Any  # the same without the comma, for the first value of a location or properties object
    trim: bool  # names and locations are trimmed and capped; properties are sent as they are


def _field(column: int, name: str, trim: bool) -> _Field:
    key = orjson.dumps(name).decode()
    return _Field(column, pa.scalar(f',{key}:"'), pa.scalar(f'{key}:"'), trim)


class ColumnarMapper:
    """Maps blocks of one segment; ``rows`` is the row path's mapper for the same header."""

    def __init__(self, mapping: FieldMapping, rows: ProfileMapper):
        arrow_on_c_allocator()
        self.rows = rows
        self._email = rows.value_indexes[0]
        self._text: list[_Field] = []
        self._location: list[_Field] = []
        self._properties: list[_Field] = []
        self._phone: int | None = None
        for (target, _), index in zip(mapping.fields.items(), rows.value_indexes[1:], strict=True):
            if target == "phone_number":
                self._phone = index
            elif target.startswith(LOCATION_PREFIX):
                self._location.append(_field(index, target[len(LOCATION_PREFIX):], True))
            elif target.startswith(PROPERTY_PREFIX):
                self._properties.append(_field(index, target[len(PROPERTY_PREFIX):], False))
            else:
                self._text.append(_field(index, target, True))
        self._indexes = sorted(set(rows.value_indexes))
        self._widest = max(self._indexes)

    def read(self, block: RowBlock) -> dict[int, Any] | None:
        """The block's text (or record batch) as Arrow columns (the mapped ones, by position),
        or None if the columnar path cannot take it: control characters (JSON would escape
        them), rows of unequal width or too short for the mapped columns (the row path pads
        them), or Parquet columns that are not all strings without nulls."""
        if block.batch is not None:
            return self._read_batch(block.batch)
        text = block.text
        data = text.encode()
        if len(data.translate(None, _CONTROL)) != len(data):
            return None
        width = text[:text.index("\n")].count(block.delimiter) + 1
        if width <= self._widest:
            return None
        names = [f"c{i}" for i in range(width)]
        wanted = [names[i] for i in self._indexes]
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(data),
                read_options=pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1),
                parse_options=pa_csv.ParseOptions(delimiter=block.delimiter, quote_char=False, double_quote=False,
                                                  escape_char=False, newlines_in_values=False,
                                                  ignore_empty_lines=False),
                convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(wanted, pa.string()),
                                                      include_columns=wanted, strings_can_be_null=False))
        except pa.ArrowInvalid:  # a ragged row
            return None
        if table.num_rows != len(block.lines):
            return None
        return {i: table.column(names[i]).combine_chunks() for i in self._indexes}

    def _read_batch(self, batch: Any) -> dict[int, Any] | None:
        columns = {i: batch.column(i) for i in self._indexes}
        for column in columns.values():
            if column.type != pa.string() or column.null_count or pc.any(pc.match_substring_regex(column, _CONTROL_RE2)).as_py():
                return None
        return columns

    def map_block(self, block: RowBlock, columns: dict[int, Any], delta: Delta) -> tuple[MappedChunk, int, dict[int, int]]:
        """``Delta.skip_unchanged`` and ``map_chunk`` of the row path, for a block ``read`` took."""
        lines: Sequence[int] = block.lines
        email = pc.utf8_trim(columns[self._email], PYTHON_SPACE)
        valid = pc.and_(pc.match_substring_regex(email, EMAIL_RE2),
                        pc.and_(pc.less_equal(pc.binary_length(email), _MAX_EMAIL),
                                pc.less_equal(pc.find_substring(email, "@"), _MAX_LOCAL)))
        lowered = pc.utf8_lower(email)
        keys = delta.email_keys(pc.if_else(valid, lowered, _EMPTY).cast(pa.binary()).to_pylist())
        unchanged = 0
        fingerprints_by_line: dict[int, int] = {}
        kept: list[int] | None = None  # positions in the block of the rows left after skipping
        if delta.fingerprinting:
            raw = pc.binary_join_element_wise(*(columns[i] for i in self.rows.value_indexes), _SEPARATOR)
            fps = delta.keying.fingerprints(raw.cast(pa.binary()).to_pylist())
            if delta.comparing:
                kept = delta.skip_known(lines, keys, fps)
                unchanged = len(lines) - len(kept)
                if unchanged:
                    take = pa.array(kept, pa.int32())
                    columns = {i: column.take(take) for i, column in columns.items()}
                    email, valid, lowered = email.take(take), valid.take(take), lowered.take(take)
                    lines, fps = [lines[i] for i in kept], array("I", [fps[i] for i in kept])
                    keys = array("q", [keys[i] for i in kept])
            fingerprints_by_line = dict(zip(lines, fps, strict=True))

        def raw_rows(positions: list[int]) -> list[Sequence[object]]:
            """The rows at ``positions`` (after skipping) as the row path reads them."""
            at = [kept[i] for i in positions] if unchanged and kept is not None else positions
            if block.batch is not None:
                return python_rows(block.batch.take(pa.array(at, pa.int32())))
            texts = block.text.split("\n")
            return [texts[i].split(block.delimiter) for i in at]

        escape = "\\" in block.text if block.batch is None else any(  # a plain CSV line holds no quote
            pc.any(pc.match_substring_regex(column, r'[\\"]')).as_py() for column in columns.values())
        chunk = self._map(columns, lines, keys, email, valid, lowered, escape, raw_rows)
        if block.rejects:
            chunk.rejects[:0] = block.rejects
            chunk.rows += len(block.rejects)
        return chunk, unchanged, fingerprints_by_line

    def _map(self, columns: dict[int, Any], lines: Sequence[int], keys: array, email: Any, valid: Any,
             lowered: Any, escape: bool, raw_rows: Any) -> MappedChunk:
        """Map rows given as columns (``escape``: some value may hold a backslash). Each row's
        JSON is one join of pieces: a field present in every row adds its key, value and quote
        as three pieces; a field empty in some rows adds one piece, its fragment or nothing."""
        count = len(lines)
        pieces: list[Any] = [_EMAIL_START, email, _QUOTE]
        checks = [valid]
        for field in self._text:
            checks.append(self._add(pieces, *self._value(columns[field.column], field, escape), field.start))
        if self._phone is not None:
            checks.append(self._add(pieces, *self._phone_number(columns[self._phone]), _PHONE_START))
        for group, name in ((self._location, "location"), (self._properties, "properties")):
            if group:
                checks += self._group(pieces, columns, group, name, escape)
        bodies = pc.binary_join_element_wise(*pieces, _BODY_END, _EMPTY)
        clean = pc.less_equal(pc.binary_length(bodies), _MAX_BODY)
        for check in checks:
            if check is not _TRUE:
                clean = pc.and_(clean, check)
        if count == 0 or pc.all(clean).as_py():
            return self._whole(bodies, lines, keys, lowered)
        return self._mixed(bodies, clean, lines, keys, lowered, raw_rows, count)

    @staticmethod
    def _add(pieces: list[Any], values: Any, present: Any, fits: Any, start: Any) -> Any:
        """Add one field's pieces; returns whether each row's value is one this path maps."""
        if pc.all(present).as_py():
            pieces += (start, values, _QUOTE)
        else:
            pieces.append(pc.if_else(present, pc.binary_join_element_wise(start, values, _QUOTE, _EMPTY), _EMPTY))
        return fits

    @staticmethod
    def _value(values: Any, field: _Field, escape: bool) -> tuple[Any, Any, Any]:
        """A field's values as sent, which rows have one, and which are within their limit."""
        fits = _TRUE
        if field.trim:
            values = pc.utf8_trim(values, PYTHON_SPACE)
            fits = pc.less_equal(pc.utf8_length(values), _MAX_CHARS)
        present = pc.not_equal(values, _EMPTY)
        if escape:  # JSON's two escapes that can occur here (control characters never reach this path)
            values = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        return values, present, fits

    @staticmethod
    def _phone_number(values: Any) -> tuple[Any, Any, Any]:
        """Phones in E.164 by ``normalize_phone``'s fast path. Most segments write them with
        spaces at most, so those are removed first; only if some number is still not E.164
        are all of its punctuation characters removed (the same result where both apply)."""
        present = pc.not_equal(values, _EMPTY)
        absent = pc.invert(present)
        phone = pc.replace_substring(values, " ", "")
        for attempt in range(2):
            if pc.any(pc.starts_with(phone, "00")).as_py():
                phone = pc.replace_substring_regex(phone, "^00", "+")
            fits = pc.or_(absent, pc.match_substring_regex(phone, _E164))
            if attempt or pc.all(fits).as_py():
                break
            phone = pc.replace_substring_regex(values, _PHONE_PUNCTUATION, "")
        return phone, present, fits

    def _group(self, pieces: list[Any], columns: dict[int, Any], group: list[_Field], name: str,
               escape: bool) -> list[Any]:
        """``,"location":{...}`` (or properties) with the group's non-empty values; returns the
        checks of its values. Where some row has an empty value, each value's fragment starts
        with a comma, and the first one's is cut."""
        fields = [self._value(columns[field.column], field, escape) for field in group]
        if all(pc.all(present).as_py() for _, present, _ in fields):
            pieces.append(pa.scalar(f',"{name}":{{'))
            for i, (field, (values, _, _)) in enumerate(zip(group, fields, strict=True)):
                pieces += (field.start if i else field.first, values, _QUOTE)
            pieces.append(_BRACE_END)
            return [fits for _, _, fits in fields]
        fragments = [pc.if_else(present, pc.binary_join_element_wise(field.start, values, _QUOTE, _EMPTY), _EMPTY)
                     for field, (values, present, _) in zip(group, fields, strict=True)]
        inner = pc.binary_join_element_wise(*fragments, _EMPTY) if len(fragments) > 1 else fragments[0]
        wrapped = pc.binary_join_element_wise(pa.scalar(f',"{name}":{{'), pc.utf8_slice_codeunits(inner, 1), _BRACE_END,
                                              _EMPTY)
        pieces.append(pc.if_else(pc.not_equal(inner, _EMPTY), wrapped, _EMPTY))
        return [fits for _, _, fits in fields]

    @staticmethod
    def _whole(bodies: Any, lines: Sequence[int], keys: array, lowered: Any) -> MappedChunk:
        """Every row mapped here: the chunk's bytes are the joined bodies' buffer, as is."""
        offsets = memoryview(bodies.buffers()[1]).cast("i")
        first, count = bodies.offset, len(bodies)  # a kernel may answer with a slice of its buffers
        start, stop = offsets[first], offsets[first + count]
        ends = array("I")  # each body's end less the chunk's start and its comma, by a kernel
        body_ends = pa.Array.from_buffers(pa.int32(), count, [None, bodies.buffers()[1]], offset=first + 1)
        shifted = pc.subtract(body_ends, pa.scalar(start + 1, pa.int32())).cast(pa.uint32())
        ends.frombytes(memoryview(shifted.buffers()[1])[4 * shifted.offset:4 * (shifted.offset + count)])
        body = bodies.buffers()[2][start:stop - 1].to_pybytes() if count else b""  # without the last comma
        return MappedChunk(len(lines), array("I", lines), keys, lowered.to_pylist(), body, ends, [], [])

    def _mixed(self, bodies: Any, clean: Any, lines: Sequence[int], keys: array, lowered: Any,
               raw_rows: Any, count: int) -> MappedChunk:
        """Clean rows from the kernels, the others mapped by the row path, in line order;
        rejects and warnings in the row path's order (oversized profiles last)."""
        flags = clean.to_pylist()
        others = [i for i in range(count) if not flags[i]]
        profiles, rejects, warnings = self.rows.map_rows([lines[i] for i in others], raw_rows(others))
        by_line: dict[int, MappedProfile] = {p.line: p for p in profiles}
        texts = bodies.to_pylist()
        emails = lowered.to_pylist()
        parts: list[bytes] = []
        out_lines, out_keys, ends, out_emails = array("I"), array("q"), array("I"), []
        too_large: list[Reject] = []
        total = 0
        for i in range(count):
            line = lines[i]
            if flags[i]:
                body = texts[i][:-1].encode()
                key, email = keys[i], emails[i]
            else:
                profile = by_line.get(line)
                if profile is None:
                    continue
                body = orjson.dumps({"type": "profile", "attributes": profile.attributes})
                key, email = keys[i], profile.email_key
                if len(body) > MAX_PROFILE_BYTES:
                    too_large.append(oversized(line, len(body)))
                    continue
            total += len(body) + (1 if parts else 0)
            parts.append(body)
            ends.append(total)
            out_lines.append(line)
            out_keys.append(key)
            out_emails.append(email)
        return MappedChunk(count, out_lines, out_keys, out_emails, b",".join(parts), ends, rejects + too_large,
                           warnings)
