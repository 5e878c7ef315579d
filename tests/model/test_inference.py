"""The plain-torch InferenceModel computes what the TorchRec RankingModel computes, eagerly and exported."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from wukong.config import MODEL_NAMES, Config
from wukong.data.batch import Batch, random_batch
from wukong.model import build_model
from wukong.model.inference import InferenceModel
from wukong.schema import FeatureSchema, SparseFeature

# Single- and multi-hot features in mixed order, and an MLP norm whose eval mode differs from train mode.
SCHEMA = FeatureSchema(
    dense=("a", "b", "c"),
    sparse=(SparseFeature("g", 9, True), SparseFeature("u", 50), SparseFeature("t", 30, True), SparseFeature("i", 40)),
)


def plain_inputs(batch: Batch, schema: FeatureSchema) -> tuple[torch.Tensor, ...]:
    """A TorchRec batch as InferenceModel's positional tensors."""
    by_key = batch.sparse.to_dict()
    single = [by_key[f.name].values() for f in schema.sparse if not f.multi_hot]
    jagged = [t for f in schema.sparse if f.multi_hot for t in (by_key[f.name].values(), by_key[f.name].lengths())]
    ids = torch.stack(single, 1) if single else torch.zeros(len(batch), 0, dtype=torch.int64)
    return batch.dense, ids, *jagged


def trained_pair(name: str, config: Config, schema: FeatureSchema = SCHEMA) -> tuple[torch.nn.Module, InferenceModel]:
    model_config = dataclasses.replace(config.model, mlp_norm="batchnorm")
    reference = build_model(name, schema, model_config)
    with torch.no_grad():  # running statistics away from their defaults, as after training
        batch = random_batch(schema, 64)
        reference(batch.dense, batch.sparse)
    reference.eval()
    plain = InferenceModel(name, schema, model_config)
    plain.load_state_dict(reference.state_dict())  # strict: the layouts match key for key
    return reference, plain.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_plain_model_matches_the_torchrec_model(name: str, tiny: Config) -> None:
    reference, plain = trained_pair(name, tiny)
    batch = random_batch(SCHEMA, 33, torch.Generator().manual_seed(4), max_multi_hot=3)  # some empty lists
    with torch.no_grad():
        expected = torch.sigmoid(reference(batch.dense, batch.sparse))
        torch.testing.assert_close(plain(*plain_inputs(batch, SCHEMA)), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "schema"),
    [(name, SCHEMA) for name in MODEL_NAMES]
    + [("wukong", FeatureSchema.synthetic(2, 3, 20)), ("dcnv2", FeatureSchema(sparse=(SparseFeature("u", 9),)))],
    ids=[*MODEL_NAMES, "single-hot-only", "no-dense"],
)
def test_the_exported_program_matches_for_any_batch_size(name: str, schema: FeatureSchema, tiny: Config) -> None:
    reference, plain = trained_pair(name, tiny, schema)
    program = torch.export.export(plain, plain.example_inputs(), dynamic_shapes=plain.dynamic_shapes())
    saved = io.BytesIO()
    torch.export.save(program, saved)
    loaded = torch.export.load(io.BytesIO(saved.getvalue())).module()
    for size in (1, 2, 17):
        batch = random_batch(schema, size, torch.Generator().manual_seed(size))
        with torch.no_grad():
            expected = torch.sigmoid(reference(batch.dense, batch.sparse))
            torch.testing.assert_close(loaded(*plain_inputs(batch, schema)), expected, rtol=0, atol=1e-6)
