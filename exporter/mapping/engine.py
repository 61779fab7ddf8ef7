"""Which path maps a block: the columnar one where it can, the row path where it cannot.

The choice is made per block, so one odd block (a quoted field, a ragged row, undecodable
bytes) costs that block's speed, not the run's, and every rule, reject reason and line
number is the row path's whichever path a block took (``tests/test_columnar.py`` holds
both to byte-identical output). ``row`` is kept as an engine of its own: the reference the
columnar path is measured and tested against, and a way out should a block ever map
differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.mapping.chunks import MappedChunk, map_chunk
from exporter.mapping.fields import FieldMapping
from exporter.mapping.mapper import ProfileMapper
from exporter.sources.rows import RowBlock
from exporter.sync.delta import Delta

ENGINES = ("columnar", "row")


@dataclass
class BlockTally:
    """How many blocks each path mapped: a run's report says when the fast path was missed."""

    columnar: int = 0
    row: int = 0


class RowEngine:
    """Row by row: the reference every block can take."""

    keep_text = False  # the source splits every line into a row

    def __init__(self, mapper: ProfileMapper, delta: Delta):
        self.mapper, self.delta = mapper, delta
        self.tally = BlockTally()

    def map(self, block: RowBlock) -> tuple[MappedChunk, int, dict[int, int]]:
        """The block's chunk, how many of its rows were unchanged (not mapped), and the
        fingerprint of each other row by line."""
        self.tally.row += 1
        block, unchanged, fingerprints = self.delta.skip_unchanged(block.split_text(), self.mapper.value_indexes)
        return map_chunk(self.mapper, block, self.delta.email_keys), unchanged, fingerprints


class ColumnarEngine(RowEngine):
    """Arrow kernels for each block of plain CSV lines (or Parquet strings) they can read; the
    row path for the rest."""

    keep_text = True  # plain CSV lines arrive unsplit, Parquet rows as their record batch

    def __init__(self, mapper: ProfileMapper, delta: Delta, mapping: FieldMapping):
        super().__init__(mapper, delta)
        from exporter.mapping.columnar import ColumnarMapper  # pyarrow: only where rows are mapped

        self.columnar = ColumnarMapper(mapping, mapper)

    def map(self, block: RowBlock) -> tuple[MappedChunk, int, dict[int, int]]:
        columns = self.columnar.read(block) if block.text or block.batch is not None else None
        if columns is None:
            return super().map(block)
        self.tally.columnar += 1
        return self.columnar.map_block(block, columns, self.delta)


def engine_for(name: str, mapper: ProfileMapper, delta: Delta, mapping: FieldMapping) -> RowEngine:
    """The columnar path maps text: an export that reads consent or typed properties maps rows."""
    if name == "columnar" and not mapper.needs_rows:
        return ColumnarEngine(mapper, delta, mapping)
    return RowEngine(mapper, delta)
