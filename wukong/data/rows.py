"""A block of preprocessed rows in memory, and its on-disk form (one Arrow IPC stream per tar member).

Columns of a block (``D`` dense features, ``S`` single-hot and ``M`` multi-hot sparse features):

- ``row_id``: int64, the row's index in the dataset's source order (unique within a dataset);
- ``label``: float32;
- ``dense``: ``fixed_size_list<float32>[D]`` (absent when D = 0);
- ``single``: ``fixed_size_list<int32>[S]``, ids of the single-hot features in layout order;
- one ``list<int32>`` column per multi-hot feature, named after it.

Fixed-size lists decode to ``(N, D)`` / ``(N, S)`` NumPy views without copying, which is what makes
the reader fast; a row's multi-hot ids are kept as CSR ``(offsets, values)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from wukong.schema import FeatureSchema


@dataclass(frozen=True)
class Layout:
    """How a schema's features sit in a block."""

    num_dense: int
    single: tuple[str, ...]
    multi: tuple[str, ...]

    @classmethod
    def of(cls, schema: FeatureSchema) -> Layout:
        return cls(
            len(schema.dense),
            tuple(f.name for f in schema.sparse if not f.multi_hot),
            tuple(f.name for f in schema.sparse if f.multi_hot),
        )


@dataclass
class Jagged:
    """Variable-length id lists in CSR form: row i holds ``values[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # int64, (N + 1,)
    values: np.ndarray  # int32

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, index: np.ndarray) -> Jagged:
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[:-1][index]
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Jagged(offsets, self.values[positions])

    def slice(self, start: int, stop: int) -> Jagged:
        offsets = self.offsets[start : stop + 1]
        return Jagged(offsets - offsets[0], self.values[offsets[0] : offsets[-1]])

    @staticmethod
    def concat(parts: list[Jagged]) -> Jagged:
        shifts = np.cumsum([0] + [len(p.values) for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, shifts)])
        return Jagged(offsets, np.concatenate([p.values for p in parts]))


@dataclass
class RowBlock:
    """Rows of one layout as NumPy arrays."""

    row_ids: np.ndarray  # int64 (N,)
    labels: np.ndarray  # float32 (N,)
    dense: np.ndarray  # float32 (N, D)
    single: np.ndarray  # int32 (N, S)
    multi: dict[str, Jagged] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_ids)

    def take(self, index: np.ndarray) -> RowBlock:
        return RowBlock(
            self.row_ids[index],
            self.labels[index],
            self.dense[index],
            self.single[index],
            {name: jagged.take(index) for name, jagged in self.multi.items()},
        )

    def slice(self, start: int, stop: int) -> RowBlock:
        return RowBlock(
            self.row_ids[start:stop],
            self.labels[start:stop],
            self.dense[start:stop],
            self.single[start:stop],
            {name: jagged.slice(start, stop) for name, jagged in self.multi.items()},
        )

    @staticmethod
    def concat(blocks: list[RowBlock]) -> RowBlock:
        if len(blocks) == 1:
            return blocks[0]
        return RowBlock(
            np.concatenate([b.row_ids for b in blocks]),
            np.concatenate([b.labels for b in blocks]),
            np.concatenate([b.dense for b in blocks]),
            np.concatenate([b.single for b in blocks]),
            {name: Jagged.concat([b.multi[name] for b in blocks]) for name in blocks[0].multi},
        )

    def to_ipc(self) -> bytes:
        columns: dict[str, pa.Array] = {
            "row_id": pa.array(self.row_ids, pa.int64()),
            "label": pa.array(self.labels, pa.float32()),
        }
        if self.dense.shape[1]:
            columns["dense"] = pa.FixedSizeListArray.from_arrays(
                pa.array(self.dense.ravel(), pa.float32()), self.dense.shape[1]
            )
        if self.single.shape[1]:
            columns["single"] = pa.FixedSizeListArray.from_arrays(
                pa.array(self.single.ravel(), pa.int32()), self.single.shape[1]
            )
        for name, jagged in self.multi.items():
            columns[name] = pa.ListArray.from_arrays(
                pa.array(jagged.offsets, pa.int32()), pa.array(jagged.values, pa.int32())
            )
        batch = pa.RecordBatch.from_pydict(columns)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_ipc(cls, data: bytes | memoryview, layout: Layout) -> RowBlock:
        batch = pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()
        n = batch.num_rows

        def fixed(name: str, width: int, dtype) -> np.ndarray:
            if not width:
                return np.zeros((n, 0), dtype=dtype)
            return batch.column(name).flatten().to_numpy().reshape(n, width)

        multi = {}
        for name in layout.multi:
            column = batch.column(name)
            multi[name] = Jagged(
                column.offsets.to_numpy().astype(np.int64), column.values.to_numpy(zero_copy_only=False)
            )
        return cls(
            batch.column("row_id").to_numpy(),
            batch.column("label").to_numpy(),
            fixed("dense", layout.num_dense, np.float32),
            fixed("single", len(layout.single), np.int32),
            multi,
        )
