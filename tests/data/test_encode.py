"""Encoders restored from a manifest and its vocabulary encode raw rows exactly as ``prepare`` did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from wukong.data.encode import encode_block, restore_encoders
from wukong.data.errors import DataError
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader, to_tensors
from wukong.data.rows import Layout
from wukong.data.sources import open_source

ROWS = 600


def write_rows(folder: Path) -> tuple[Path, Path]:
    """Ints, strings and lists with repeats (min_count matters), missing values of every kind."""
    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, ROWS)
    words = np.array(["red", "green", "blue", "cyan", "rare-" + "x" * 3])
    tags = [[str(w) for w in rng.choice(words, rng.integers(0, 4))] for _ in range(ROWS)]
    tags[::17] = [None] * len(tags[::17])
    tags[5] = ["red", None]
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "clicked": rng.integers(0, 2, ROWS),
                "price": pa.array([None if i % 11 == 0 else float(v) for i, v in enumerate(rng.normal(5, 3, ROWS))]),
                "user": pa.array([None if i % 13 == 0 else int(u) for i, u in enumerate(users)], pa.int64()),
                "city": pa.array([None if i % 7 == 0 else f"c{u % 9}" for i, u in enumerate(users)]),
                "tags": pa.array(tags, pa.list_(pa.string())),
            }
        ),
        folder / "rows.parquet",
    )
    spec = folder.parent / "spec.yaml"
    spec.write_text("label: clicked\ndense: [price]\nsparse:\n  - user\n  - city\n  - {name: tags, multi_hot: true}\n")
    return folder, spec


@pytest.mark.parametrize("options", [PrepareOptions(min_count=3), PrepareOptions(categorical="hash", hash_size=64)])
def test_restored_encoders_reproduce_the_prepared_rows(tmp_path: Path, options: PrepareOptions) -> None:
    folder, spec = write_rows(tmp_path / "raw")
    source = open_source("parquet", folder, spec=spec)
    out = str(tmp_path / "ds")
    manifest = prepare(source, out, options)
    assert manifest.preprocessing["value_types"] == {"user": "int64", "city": "string", "tags": "string"}
    vocabulary = pq.read_table(Path(out) / manifest.files["vocabulary"]) if "vocabulary" in manifest.files else None
    encoders = restore_encoders(manifest.preprocessing["categorical"], manifest.schema, vocabulary)
    raw = pa.concat_tables(chunk.table for chunk in source.chunks())
    layout = Layout.of(manifest.schema)
    block = encode_block(raw, manifest.schema.dense, encoders, layout, np.arange(raw.num_rows), np.zeros(raw.num_rows))
    if options.categorical == "frequency":
        assert (block.single == 0).any() and (block.multi["tags"].values == 0).any()  # unseen or missing: OOV
    for split in ("train", "valid", "test"):
        batch = next(iter(DatasetReader(out, split, batch_size=ROWS, shuffle=False, drop_last=False)))
        dense, values, lengths, _, _ = to_tensors(block.take(batch.row_ids.numpy()))
        torch.testing.assert_close(batch.dense, dense, rtol=0, atol=0)
        assert torch.equal(batch.sparse.values(), values) and torch.equal(batch.sparse.lengths(), lengths)


def test_a_vocabulary_that_does_not_fit_the_schema_is_refused(tmp_path: Path) -> None:
    folder, spec = write_rows(tmp_path / "raw")
    out = str(tmp_path / "ds")
    manifest = prepare(open_source("parquet", folder, spec=spec), out, PrepareOptions())
    vocabulary = pq.read_table(Path(out) / manifest.files["vocabulary"])
    shorter = vocabulary.slice(0, vocabulary.num_rows - 1)  # the last value of the last feature is gone
    with pytest.raises(DataError, match="not this model's vocabulary"):
        restore_encoders(manifest.preprocessing["categorical"], manifest.schema, shorter)
    with pytest.raises(DataError, match="unknown categorical encoding"):
        restore_encoders({"mode": "bloom"}, manifest.schema, vocabulary)
