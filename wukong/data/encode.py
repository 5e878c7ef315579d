"""Raw columns → model inputs with fitted encoders: the one path shared by ``prepare`` and ``predict``.

``wukong data prepare`` fits the encoders on the training rows (:mod:`wukong.data.preprocess`) and
encodes every row with :func:`encode_block`; it records what it fitted in the manifest (the
categorical mode, the vocabulary file, the raw value types of the sparse columns). ``wukong
predict`` restores those encoders with :func:`restore_encoders` and encodes new raw rows with the
same :func:`encode_block`, so a served model sees exactly the inputs training saw:

- dense: ``log(1 + max(x, 0))``, a missing value → 0 (:func:`~wukong.data.preprocess.transform_dense`);
- sparse, frequency vocabulary: the value's id, an unseen or missing value → the OOV id 0;
- sparse, hashing: ``hash(value) mod size`` (unseen values hash like any other);
- multi-hot: every element encoded alike, a missing list → no ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wukong.data.errors import DataError
from wukong.data.preprocess import CategoricalEncoder, FrequencyVocabulary, HashEncoder, transform_dense
from wukong.data.rows import Jagged, Layout, RowBlock
from wukong.schema import FeatureSchema


def encode_block(
    table: pa.Table,
    dense: Sequence[str],
    encoders: Mapping[str, CategoricalEncoder],
    layout: Layout,
    row_ids: np.ndarray,
    labels: np.ndarray,
) -> RowBlock:
    """The rows of ``table`` as a :class:`RowBlock`: the ``dense`` columns transformed, in that order;
    the sparse columns encoded by their ``encoders``, placed by ``layout``."""
    n = table.num_rows
    dense_values = (
        np.stack([transform_dense(table.column(c)) for c in dense], axis=1) if dense else np.zeros((n, 0), np.float32)
    )
    single = [encoders[name].encode(table.column(name), multi_hot=False) for name in layout.single]
    multi = {}
    for name in layout.multi:
        offsets, ids = encoders[name].encode(table.column(name), multi_hot=True)
        multi[name] = Jagged(offsets, ids)
    return RowBlock(
        row_ids=row_ids,
        labels=labels.astype(np.float32),
        dense=dense_values,
        single=np.stack(single, axis=1) if single else np.zeros((n, 0), np.int32),
        multi=multi,
    )


def value_type(column: pa.ChunkedArray | pa.Array) -> pa.DataType:
    """The type of a sparse column's values (a list column's elements)."""
    kind = column.type
    if pa.types.is_dictionary(kind):  # prepare spools scalar columns dictionary-encoded
        return kind.value_type
    return kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else kind


def value_types(table: pa.Table, names: Sequence[str]) -> dict[str, str]:
    """The value type of each sparse column ``names`` of ``table``, as Arrow type names (``int64``)."""
    return {name: str(value_type(table.column(name))) for name in names}


def restore_encoders(
    categorical: Mapping[str, Any], schema: FeatureSchema, vocabulary: pa.Table | None
) -> dict[str, CategoricalEncoder]:
    """The fitted encoder of every sparse feature, from a manifest's ``preprocessing.categorical`` and
    its vocabulary table (``feature``, ``value`` as text, ``id``; ids ``1..V`` per feature).

    Raises:
        DataError: an unknown categorical mode, or a vocabulary that does not match the schema.
    """
    mode = categorical.get("mode")
    if not schema.sparse:
        return {}
    if mode == "hash":
        return {f.name: HashEncoder(int(categorical["size"])) for f in schema.sparse}
    if mode != "frequency":
        raise DataError(f"unknown categorical encoding {mode!r}; re-prepare the dataset with this version")
    encoders: dict[str, CategoricalEncoder] = {}
    for feature in schema.sparse:
        rows = (
            vocabulary.filter(pc.equal(vocabulary.column("feature"), feature.name)).sort_by("id")
            if vocabulary is not None
            else pa.table({"value": pa.array([], pa.string()), "id": pa.array([], pa.int32())})
        )
        ids = rows.column("id").to_numpy()
        if len(ids) + 1 != feature.cardinality or not np.array_equal(ids, np.arange(1, len(ids) + 1)):
            raise DataError(
                f"the vocabulary of {feature.name!r} holds {len(ids)} values, not the ids 1..{feature.cardinality - 1} "
                f"of the model's {feature.cardinality}-row table (0: unseen); it is not this model's vocabulary"
            )
        encoder = FrequencyVocabulary(categorical.get("min_count", 1), categorical.get("max_size"))
        encoder.values = rows.column("value").combine_chunks()
        encoder.counts = rows.column("count").to_numpy() if "count" in rows.column_names else None
        encoders[feature.name] = encoder
    return encoders
