"""Kubeflow Pipelines (v2) components, one per file, each a thin wrapper over :mod:`wukong.pipeline.steps`.

Every component runs the same image (``IMAGE``) and imports ``wukong`` inside its body, as KFP
lightweight components must. Secrets never travel as parameters: the pipeline injects S3
credentials into each step with ``kfp.kubernetes.use_secret_as_env``.
"""

from components.evaluate import evaluate
from components.image import IMAGE
from components.ingest import ingest
from components.ingest_commit import ingest_commit
from components.ingest_gather import ingest_gather
from components.ingest_parts import ingest_parts
from components.ingest_plan import ingest_plan
from components.register import register
from components.sweep_plan import sweep_plan
from components.sweep_report import sweep_report
from components.train import train
from components.trial import train_trial
from components.tune_plan import tune_plan
from components.tune_report import tune_report
from components.warm_start import warm_start

__all__ = [
    "IMAGE",
    "evaluate",
    "ingest",
    "ingest_commit",
    "ingest_gather",
    "ingest_parts",
    "ingest_plan",
    "register",
    "sweep_plan",
    "sweep_report",
    "train",
    "train_trial",
    "tune_plan",
    "tune_report",
    "warm_start",
]
