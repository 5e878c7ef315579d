"""Launching training on Kubernetes: Kubeflow Trainer v2 TrainJobs (through the ``kubeflow`` SDK) and
training-operator v1 PyTorchJobs, a launcher for each that waits and streams logs, the
ClusterTrainingRuntime, and torchx integration (a component and a ``kubeflow`` scheduler).

Nothing here is imported by :mod:`wukong.model`, :mod:`wukong.data` or :mod:`wukong.train`. The
names below load on first use (the SDKs take a second to import; ``wukong --help`` needs none).
"""

from importlib import import_module

_EXPORTS = {
    "APIS": "submit",
    "build_job": "submit",
    "launch_training": "submit",
    "JobLauncher": "launcher",
    "LaunchError": "launcher",
    "PyTorchJobLauncher": "launcher",
    "build_pytorchjob": "pytorchjob",
    "to_wire": "pytorchjob",
    "JobResources": "resources",
    "job_name": "resources",
    "TrainJobRequest": "trainjob",
    "build_trainjob": "trainjob",
    "TrainJobLauncher": "trainjob_launcher",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
