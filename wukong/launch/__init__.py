"""Launching training on Kubernetes: PyTorchJob builder, a launcher that waits and streams logs, and
torchx integration (a component and a ``kubeflow`` scheduler).

Nothing here is imported by :mod:`wukong.model`, :mod:`wukong.data` or :mod:`wukong.train`.
"""

from wukong.launch.launcher import LaunchError, PyTorchJobLauncher, run_pytorchjob
from wukong.launch.pytorchjob import JobResources, build_pytorchjob, job_name, to_wire

__all__ = [
    "JobResources",
    "LaunchError",
    "PyTorchJobLauncher",
    "build_pytorchjob",
    "job_name",
    "run_pytorchjob",
    "to_wire",
]
