"""JSON Lines: one object per line; its keys are the columns.

The column set is the first object's keys (a mapped column missing there fails the run
up front, as a missing CSV header would); later objects are projected onto it.
"""

from __future__ import annotations

import orjson

from exporter.rejects import Reject
from exporter.sources.rows import RowBlock, has_undecodable


class JsonlParser:
    """Feed whole lines (``LineSplitter``'s output); get blocks of rows with their line numbers."""

    def __init__(self, columns: list[str] | None = None) -> None:
        """``columns``: the keys to read (by default, the first object's)."""
        self.columns: list[str] | None = columns
        self._lines_done = 0

    def feed(self, text: str, final: bool = False) -> RowBlock:
        block = RowBlock([], [], has_undecodable=has_undecodable(text))
        line = self._lines_done
        pieces = text.split("\n")  # not splitlines(): JSON strings may hold U+2028 and friends
        pieces.pop()
        for raw in pieces:
            line += 1
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                block.rejects.append(Reject(line, "", f"line {line} is not a JSON object (invalid JSON)"))
                continue
            if not isinstance(obj, dict):
                block.rejects.append(Reject(line, "", f"line {line} is not a JSON object (a JSON {_json_type(obj)})"))
                continue
            if self.columns is None:
                self.columns = list(obj)
            block.lines.append(line)
            block.rows.append([obj.get(c) for c in self.columns])
        self._lines_done = line
        return block


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
