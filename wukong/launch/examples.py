"""The manifests rendered from the launchers' own builders (``make manifests``): the example PyTorchJob
and TrainJob of each overlay (``k8s/overlays/*/{pytorchjob,trainjob}.example.yaml``) and the
ClusterTrainingRuntimes (``k8s/runtimes/*.yaml``).

The files show exactly what a run submits; a test fails when they are stale.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from wukong.launch import pytorchjob, trainjob
from wukong.launch.resources import GPU_TOLERATION, JobResources
from wukong.launch.runtime import build_runtime

K8S = Path(__file__).resolve().parents[2] / "k8s"
ARGS = ["--data", "s3://wukong/datasets/criteo", "--output", "s3://wukong/runs/example", "--config", "criteo"]
HEADER = "# Rendered by `make manifests` (wukong.launch.examples) with the launcher's own builder. Do not edit.\n"

EXAMPLES = {
    "cpu-dev": JobResources(
        image="localhost:5001/wukong:0.1.0-cpu",
        namespace="wukong",
        nodes=2,
        nproc_per_node=2,
        cpu="2",
        memory="6Gi",
        shm_size="1Gi",
    ),
    "h100": JobResources(
        image="ghcr.io/wukong-rec/wukong:0.1.0-cuda",
        namespace="wukong",
        nodes=4,
        nproc_per_node=8,
        gpus_per_node=8,
        cpu="96",
        memory="1600Gi",
        shm_size="256Gi",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=[dict(GPU_TOLERATION)],
        priority_class="wukong-training",
    ),
}
# The runtime each overlay's TrainJobs name (the ConfigMap's WUKONG_TRAINING_RUNTIME) and its defaults:
# the CPU image for any cluster; the H100 pool's placement and priority class (a TrainJob cannot set it).
RUNTIMES = {
    "cpu-dev": (trainjob.RUNTIME, JobResources()),
    "h100": (f"{trainjob.RUNTIME}-h100", replace(EXAMPLES["h100"], nodes=1)),
}


def render() -> dict[Path, str]:
    files = {}
    for overlay, resources in EXAMPLES.items():
        folder = K8S / "overlays" / overlay
        job = pytorchjob.build_pytorchjob(f"wukong-train-{overlay}", ARGS, resources)
        files[folder / "pytorchjob.example.yaml"] = HEADER + pytorchjob.to_yaml(job)
        runtime, defaults = RUNTIMES[overlay]
        request = trainjob.build_trainjob(
            f"wukong-train-{overlay}", ARGS, replace(resources, priority_class=None), runtime
        )
        files[folder / "trainjob.example.yaml"] = HEADER + trainjob.to_yaml(request)
        runtime_yaml = yaml.safe_dump(build_runtime(runtime, defaults), sort_keys=False)
        files[K8S / "runtimes" / f"{runtime}.yaml"] = HEADER + runtime_yaml
    return files


if __name__ == "__main__":
    for path, text in render().items():
        path.write_text(text)
        print(path)
