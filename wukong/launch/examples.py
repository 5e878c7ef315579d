"""The example PyTorchJobs kept in ``k8s/overlays/*/pytorchjob.example.yaml`` (``make manifests``).

They are rendered by the same builder the pipeline's launcher and the torchx scheduler use, so the
files show exactly what a run submits; a test fails when they are stale.
"""

from __future__ import annotations

from pathlib import Path

from wukong.launch.pytorchjob import JobResources, build_pytorchjob, to_yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
ARGS = ["--data", "s3://wukong/datasets/criteo", "--output", "s3://wukong/runs/example", "--config", "criteo"]

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
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        priority_class="wukong-training",
    ),
}


def render() -> dict[Path, str]:
    header = "# Rendered by `make manifests` (wukong.launch.examples) with the launcher's own builder. Do not edit.\n"
    return {
        K8S / "overlays" / overlay / "pytorchjob.example.yaml": header
        + to_yaml(build_pytorchjob(f"wukong-train-{overlay}", ARGS, resources))
        for overlay, resources in EXAMPLES.items()
    }


if __name__ == "__main__":
    for path, text in render().items():
        path.write_text(text)
        print(path)
