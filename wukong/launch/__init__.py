"""Launching training on Kubernetes: Kubeflow Trainer v2 TrainJobs (through the ``kubeflow`` SDK) and
training-operator v1 PyTorchJobs, a launcher for each that waits and streams logs, the
ClusterTrainingRuntime, and torchx integration (a component and a ``kubeflow`` scheduler).

Nothing here is imported by :mod:`wukong.model`, :mod:`wukong.data` or :mod:`wukong.train`.
"""

from wukong.launch.launcher import JobLauncher, LaunchError, PyTorchJobLauncher
from wukong.launch.pytorchjob import build_pytorchjob, to_wire
from wukong.launch.resources import JobResources, job_name
from wukong.launch.submit import APIS, build_job, launch_training
from wukong.launch.trainjob import TrainJobRequest, build_trainjob
from wukong.launch.trainjob_launcher import TrainJobLauncher

__all__ = [
    "APIS",
    "JobLauncher",
    "JobResources",
    "LaunchError",
    "PyTorchJobLauncher",
    "TrainJobLauncher",
    "TrainJobRequest",
    "build_job",
    "build_pytorchjob",
    "build_trainjob",
    "job_name",
    "launch_training",
    "to_wire",
]
