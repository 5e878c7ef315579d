"""Scoring raw rows with an exported model (``wukong predict``).

Raw rows are the columns a source hands to ``wukong data prepare`` (a Parquet source's columns as its
feature spec names them; MovieLens' ``user_id``, ``genres``...): the dense and sparse features of the
signature, any label column ignored. They become the program's tensors through the training
preprocessing itself (:func:`wukong.data.encode.encode_block` with the encoders restored from the
bundled vocabulary), after each sparse column is cast to the value type it had in training (so
``"42"`` and ``42`` hash and look up alike). Unseen and missing values get what training gave them:
the out-of-vocabulary id 0 (or their hash); a missing dense value counts as 0, a missing list as
no ids.

Example::

    model = ServedModel("runs/pipeline/registry/wukong-ctr/versions/000001/export")
    probabilities = model.score(pyarrow.parquet.read_table("rows.parquet"))   # (N,) float32
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from wukong.data.encode import encode_block, restore_encoders
from wukong.data.errors import DataError
from wukong.data.rows import Layout, RowBlock
from wukong.io import open_storage, upload_object
from wukong.schema import FeatureSchema
from wukong.serve.artifact import load_program, read_signature

BATCH_ROWS = 65_536
OUTPUT = "probability"


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def _arrow_type(name: str | None) -> pa.DataType | None:
    """The Arrow type named ``name`` (``int64``, ``string``...), None when unknown or not a plain alias."""
    try:
        return pa.type_for_alias(name) if name else None
    except ValueError:
        return None


class ServedModel:
    """An exported model with its preprocessing: raw Arrow rows in, probabilities out.

    Args:
        uri: the artifact folder (``signature.json`` and the files it names).
        device: where the program runs (``cpu`` or ``cuda``).
    """

    def __init__(self, uri: str, device: str = "cpu") -> None:
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise DataError(f"--device {device}: not a device; use cpu or cuda[:N]") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise DataError(f"--device {device}: no CUDA device here; use --device cpu")
        storage = open_storage(uri)
        self.uri = uri
        self.signature = read_signature(storage)
        files = self.signature["files"]
        self.schema = FeatureSchema.from_dict(self.signature["schema"])
        vocabulary = None
        if "vocabulary" in files:
            vocabulary = pq.read_table(io.BytesIO(storage.read_bytes(files["vocabulary"])))
        preprocessing = self.signature["preprocessing"]
        self.encoders = restore_encoders(preprocessing["categorical"], self.schema, vocabulary)
        types = preprocessing.get("value_types", {})
        self.value_types = {f.name: _arrow_type(types.get(f.name)) for f in self.schema.sparse}
        self.layout = Layout.of(self.schema)
        self.program = load_program(storage, self.signature, device)

    @property
    def columns(self) -> list[str]:
        """The raw columns a row needs: dense, then sparse features."""
        return [*self.schema.dense, *self.schema.sparse_names]

    def check_columns(self, schema: pa.Schema, where: str) -> None:
        """One line naming what ``schema`` lacks (or holds in the wrong shape) to be scored."""
        missing = [c for c in self.columns if c not in schema.names]
        if missing:
            raise DataError(
                f"{where}: columns {', '.join(missing)} are missing (the model reads {', '.join(self.columns)}); "
                "give rows with the columns `wukong data prepare` read"
            )
        for feature in self.schema.sparse:
            given = schema.field(feature.name).type
            if _is_list(given) != feature.multi_hot and not pa.types.is_null(given):  # null: all missing
                kind = "a list column (multi-hot)" if feature.multi_hot else "a scalar column"
                raise DataError(f"{where}: column {feature.name!r} must be {kind}, it is {given}")

    def _typed(self, table: pa.Table, where: str) -> pa.Table:
        """The feature columns, sparse ones cast to their training value types, dense ones to float64."""
        columns = {}
        for name in self.schema.dense:
            try:
                columns[name] = pc.cast(table.column(name), pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise DataError(f"{where}: dense column {name!r} must hold numbers ({error})") from None
        for feature in self.schema.sparse:
            column, target = table.column(feature.name), self.value_types[feature.name]
            if target is None and pa.types.is_null(column.type):  # all missing, training type unknown
                target = pa.string()
            if target is not None and feature.multi_hot:
                target = pa.large_list(target) if pa.types.is_large_list(column.type) else pa.list_(target)
            if target is not None and column.type != target:
                try:
                    column = pc.cast(column, target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise DataError(
                        f"{where}: column {feature.name!r} ({column.type}) cannot be read as {target}, its type in "
                        f"training ({error})"
                    ) from None
            columns[feature.name] = column
        return pa.table(columns)

    def encode(self, table: pa.Table, where: str = "input") -> RowBlock:
        """Raw rows → the prepared block training would have made of them (labels 0)."""
        self.check_columns(table.schema, where)
        n = table.num_rows
        return encode_block(
            self._typed(table, where),
            self.schema.dense,
            self.encoders,
            self.layout,
            np.arange(n, dtype=np.int64),
            np.zeros(n, np.float32),
        )

    def tensors(self, block: RowBlock) -> tuple[torch.Tensor, ...]:
        """The program's positional inputs (the signature's ``tensors``) of a prepared block."""
        jagged = []
        for name in self.layout.multi:
            rows = block.multi[name]
            jagged += [torch.from_numpy(rows.values.astype(np.int64)), torch.from_numpy(rows.lengths.astype(np.int64))]
        inputs = (
            torch.from_numpy(np.ascontiguousarray(block.dense, dtype=np.float32)),
            torch.from_numpy(block.single.astype(np.int64)),
            *jagged,
        )
        return tuple(t.to(self.device) for t in inputs)

    @torch.no_grad()
    def score(self, table: pa.Table, where: str = "input") -> np.ndarray:
        """``(N,)`` float32 probabilities of the raw rows of ``table``."""
        if table.num_rows == 0:
            return np.zeros(0, np.float32)
        return self.program(*self.tensors(self.encode(table, where))).float().cpu().numpy()


def input_files(path: Path) -> list[Path]:
    """A Parquet file, or every ``*.parquet`` under a folder (sorted)."""
    if not path.exists():
        raise DataError(f"{path}: input does not exist; check --input")
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no *.parquet files in this folder")
    return files


def _batches(files: list[Path], columns: list[str], batch_rows: int) -> Iterator[tuple[Path, pa.Table]]:
    for file in files:
        try:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows, columns=columns):
                yield file, pa.Table.from_batches([batch])
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{file}: not a readable Parquet file ({error})") from None


def _schema(file: Path) -> pa.Schema:
    try:
        return pq.read_schema(file)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{file}: not a readable Parquet file ({error})") from None


def predict_file(
    model: ServedModel, input_path: Path, output_uri: str, keep: Sequence[str] = (), batch_rows: int = BATCH_ROWS
) -> int:
    """Score every row under ``input_path`` into the Parquet file ``output_uri`` (a path or ``s3://``
    URI): column ``probability`` plus the ``keep`` columns, in input order. Returns the row count.

    The output appears whole or not at all: it is written to a local temporary file first, then
    published in one step (a rename, or one S3 upload).

    Raises:
        DataError: unreadable input, missing or ill-typed columns (checked in every file before any scoring).
    """
    if batch_rows < 1:
        raise DataError(f"--batch-rows must be >= 1, got {batch_rows}")
    files = input_files(input_path)
    if OUTPUT in keep:
        raise DataError(f"--keep {OUTPUT}: the output's own column; rename that input column")
    schemas = {file: _schema(file) for file in files}
    for file, schema in schemas.items():
        model.check_columns(schema, str(file))
        absent = [c for c in keep if c not in schema.names]
        if absent:
            raise DataError(f"{file}: --keep columns {', '.join(absent)} are not in the input")
    kept = pa.schema([schemas[files[0]].field(c) for c in keep])
    output = pa.schema([pa.field(OUTPUT, pa.float32()), *kept])
    wanted = list(dict.fromkeys([*model.columns, *keep]))
    rows = 0
    with tempfile.TemporaryDirectory(prefix="wukong-predict-") as workdir:
        local = Path(workdir) / "scores.parquet"
        with pq.ParquetWriter(local, output) as writer:
            for file, table in _batches(files, wanted, batch_rows):
                scores = pa.array(model.score(table, str(file)), pa.float32())
                passed = [table.column(c).cast(kept.field(c).type) for c in keep]
                writer.write_table(pa.table([scores, *passed], output))
                rows += table.num_rows
        upload_object(local, output_uri)
    return rows
