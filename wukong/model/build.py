"""Build any model by name, so that every tool compares models with a loop over names.

``build_arch`` needs only torch (use it to benchmark the dense part anywhere); ``build_model`` adds
the TorchRec embedding layer and so imports TorchRec when called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from wukong.config import MODEL_NAMES, ModelConfig
from wukong.model.dcn import DCNv2Arch
from wukong.model.dlrm import DLRMArch
from wukong.model.finalmlp import FinalMLPArch
from wukong.model.init import apply_linear_init
from wukong.model.recmodel import RankingModel
from wukong.model.stack import WukongArch
from wukong.schema import FeatureSchema


def _wukong(n: int, m: ModelConfig, dense_rows: int) -> nn.Module:
    return WukongArch(
        num_features=n,
        dim=m.embedding_dim,
        num_layers=m.num_layers,
        num_fmb=m.num_fmb_embeddings,
        num_lcb=m.num_lcb_embeddings,
        rank=m.fm_rank,
        fmb_hidden=m.fmb_mlp,
        head_hidden=m.head_mlp,
        projection=m.fm_projection,
        attention_rank=m.attention_rank,
        attention_hidden=m.attention_mlp,
        fmb_activation=m.fmb_activation,
        layer_dropout=m.layer_dropout,
        layer_norm=m.layer_norm,
        layer_form=m.layer_form,
        row_split=m.row_split,
        projection_init=m.fm_projection_init,
        **{f"fmb_{k}": v for k, v in m.mlp_style(m.fmb_dropout, m.fmb_norm).items()},
        **{f"head_{k}": v for k, v in m.mlp_style(m.head_dropout, m.head_norm).items()},
    )


def _dlrm(n: int, m: ModelConfig, dense_rows: int) -> nn.Module:
    style = m.mlp_style(m.dlrm.dropout, m.dlrm.norm)
    return DLRMArch(n, m.embedding_dim, m.dlrm.top_mlp, num_dense_rows=dense_rows, **style)


def _dcnv2(n: int, m: ModelConfig, dense_rows: int) -> nn.Module:
    style = m.mlp_style(m.dcnv2.dropout, m.dcnv2.norm)
    return DCNv2Arch(n, m.embedding_dim, m.dcnv2.num_cross_layers, m.dcnv2.rank, m.dcnv2.deep_mlp, **style)


def _finalmlp(n: int, m: ModelConfig, dense_rows: int) -> nn.Module:
    f = m.finalmlp
    style = m.mlp_style(f.dropout, f.norm)
    return FinalMLPArch(n, m.embedding_dim, f.stream1_mlp, f.stream2_mlp, f.gate_hidden, f.num_heads, **style)


ARCH_BUILDERS: dict[str, Callable[[int, ModelConfig, int], nn.Module]] = {
    "wukong": _wukong,
    "dlrm": _dlrm,
    "dcnv2": _dcnv2,
    "finalmlp": _finalmlp,
}
assert tuple(ARCH_BUILDERS) == MODEL_NAMES


def build_arch(name: str, num_features: int, config: ModelConfig, num_dense_rows: int = 1) -> nn.Module:
    """The interaction arch of model ``name``: ``(B, n, d) → (B,)`` logits. Plain torch, no TorchRec.

    Args:
        name: one of :data:`wukong.config.MODEL_NAMES`.
        num_features: n, rows of the embedding layer's output.
        config: the model settings (``config.name`` is ignored: ``name`` wins).
        num_dense_rows: how many leading rows hold dense-feature embeddings (DLRM passes them through).
    """
    if name not in ARCH_BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return apply_linear_init(ARCH_BUILDERS[name](num_features, config, num_dense_rows), config.linear_init)


def build_model(
    name: str, schema: FeatureSchema, config: ModelConfig, device: torch.device | str | None = None
) -> RankingModel:
    """Embedding layer (TorchRec) + the arch of model ``name``, as one :class:`RankingModel`.

    Example::

        model = build_model("wukong", schema, load_config("tiny").model)
        logits = model(dense, kjt)  # (B,)
    """
    from wukong.model.embedding import FeatureEmbedding  # TorchRec is imported only here

    with torch.device(device) if device is not None else contextlib.nullcontext():
        embedding = FeatureEmbedding(
            schema,
            config.embedding_dim,
            config.dense_mlp,
            config.num_dense_embeddings,
            device,
            init=config.embedding_init,
            init_scale=config.embedding_init_scale,
            dense_dropout=config.dense_dropout,
            dense_norm=config.dense_norm,
        )
        apply_linear_init(embedding, config.linear_init)
        arch = build_arch(name, embedding.num_features, config, embedding.num_dense_embeddings)
    return RankingModel(embedding, arch, name)
