"""How the pooled embeddings become the rows of X0 (:func:`wukong.model.embedding.pooled_rows`)."""

from __future__ import annotations

import torch
from torchrec.sparse.jagged_tensor import KeyedTensor

from wukong.model.embedding import pooled_rows


def keyed(keys: list[str], batch: int = 3, dim: int = 4) -> KeyedTensor:
    values = torch.arange(batch * len(keys) * dim, dtype=torch.float32).view(batch, -1).requires_grad_()
    return KeyedTensor(keys=keys, length_per_key=[dim] * len(keys), values=values)


def test_rows_in_the_collections_order_are_a_view_of_its_values() -> None:
    pooled = keyed(["a", "b", "c"])
    rows = pooled_rows(pooled, ["a", "b", "c"], 4)
    assert rows.shape == (3, 3, 4) and rows.data_ptr() == pooled.values().data_ptr()  # no copy
    torch.testing.assert_close(rows[:, 1], pooled["b"])


def test_rows_in_another_order_are_gathered_by_key() -> None:
    pooled = keyed(["c", "a", "b"])  # as a sharding plan may order them
    rows = pooled_rows(pooled, ["a", "b", "c"], 4)
    for index, key in enumerate(["a", "b", "c"]):
        torch.testing.assert_close(rows[:, index], pooled[key])
    rows.sum().backward()  # gradients reach every key's values
    assert torch.equal(pooled.values().grad, torch.ones(3, 12))


def test_the_view_passes_gradients_back_like_the_gather() -> None:
    weights = torch.randn(3, 2, 4)
    grads = []
    for keys in (["a", "b"], ["b", "a"]):
        pooled = keyed(keys, dim=4)
        (pooled_rows(pooled, ["a", "b"], 4) * weights).sum().backward()
        grads.append({key: pooled.values().grad.view(3, 2, 4)[:, keys.index(key)] for key in keys})
    for key in ("a", "b"):
        torch.testing.assert_close(grads[0][key], grads[1][key])
