"""Wukong and its baselines.

- :func:`build_model` / :func:`build_arch`: any model by name (``wukong``, ``dlrm``, ``dcnv2``, ``finalmlp``).
- :mod:`wukong.model.blocks`, :mod:`wukong.model.stack`: FMB, LCB, Wukong layers.
- :mod:`wukong.model.flops`: analytic FLOPs per example.

Importing this package does not import TorchRec; only :mod:`wukong.model.embedding` does.
"""

from wukong.model.blocks import FactorizationMachineBlock, LinearCompressionBlock
from wukong.model.build import build_arch, build_model
from wukong.model.flops import FlopCount, count_flops
from wukong.model.recmodel import RankingModel
from wukong.model.stack import CompactWukongLayer, WukongArch, WukongLayer

__all__ = [
    "CompactWukongLayer",
    "FactorizationMachineBlock",
    "FlopCount",
    "LinearCompressionBlock",
    "RankingModel",
    "WukongArch",
    "WukongLayer",
    "build_arch",
    "build_model",
    "count_flops",
]
