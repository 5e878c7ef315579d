"""The ClusterTrainingRuntimes TrainJobs of this project run on (``k8s/runtimes/``, ``make manifests``).

Kubeflow Trainer v2 splits a job in two: the cluster's policy lives in a runtime, the run's
specifics in the TrainJob (:mod:`wukong.launch.trainjob`). The stock ``torch-distributed`` runtime
runs a generic PyTorch image as root; TorchRec needs this project's image (torch, fbgemm and
torchrec built together) and the entry point ``torchrun -m wukong.train``. Each runtime here is a
JobSet with one replicated job, ``node`` (the trainer: ``numNodes`` pods of an indexed Job), and:

- the torch ML policy, so the Trainer injects torchrun's ``PET_*`` rendezvous settings;
- the pod of the PyTorchJob builder (same pieces: credentials from the Secret, memory-backed
  ``/dev/shm``, non-root, limits) with the container named ``node``;
- restarts for node loss: a failed pod fails its Job at once (``backoffLimit: 0``) and the JobSet
  recreates every node (``failurePolicy.maxRestarts``), since torchrun's static rendezvous cannot
  re-admit a single replaced node; training resumes from its latest complete checkpoint;
- ``ttlSecondsAfterFinished`` for the JobSet (pods and logs) of a finished job;
- for GPU pools, the priority class, which a TrainJob cannot patch.
"""

from __future__ import annotations

from typing import Any

from kubeflow.trainer.constants import constants

from wukong.launch.resources import JOB_LABELS, JobResources, training_container, training_pod, wire
from wukong.launch.trainjob import NODE, RUNTIME

FRAMEWORK_LABEL = constants.RUNTIME_FRAMEWORK_LABEL  # the SDK lists only runtimes that carry it
ANCESTOR_LABEL = constants.TRAINJOB_ANCESTOR_LABEL  # marks the replicated job that TrainJob.trainer fills in


def build_runtime(name: str, resources: JobResources) -> dict[str, Any]:
    """A ClusterTrainingRuntime running ``torchrun -m wukong.train`` in ``resources.image``, with
    ``resources`` as the defaults a TrainJob overrides (image, sizes, placement)."""
    container = training_container(NODE, ["torchrun", "-m", "wukong.train"], None, resources)
    pod = wire(training_pod(container, resources))
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {**JOB_LABELS, FRAMEWORK_LABEL: "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": resources.nodes, "torch": {}},
            "template": {
                "spec": {
                    "failurePolicy": {"maxRestarts": resources.max_restarts},
                    "ttlSecondsAfterFinished": resources.ttl_seconds_after_finished,
                    "replicatedJobs": [
                        {
                            "name": NODE,
                            "replicas": 1,
                            "template": {
                                "metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
                                "spec": {"backoffLimit": 0, "template": pod},
                            },
                        }
                    ],
                }
            },
        },
    }


__all__ = ["RUNTIME", "build_runtime"]
