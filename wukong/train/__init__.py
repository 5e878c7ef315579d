"""Distributed training: TorchRec sharded embeddings, data-parallel dense layers, one entry point.

``python -m wukong.train`` under torchrun (or ``wukong train --nproc N``) runs :class:`Trainer`.
"""
