"""``wukong launch``: train on a Kubernetes cluster from outside Kubeflow Pipelines, as a Kubeflow
Trainer v2 TrainJob (``--api trainjob``, the default) or a training-operator v1 PyTorchJob.

It submits the job the pipeline's train step submits, named after ``--output``: running the same
command again follows the job it created instead of starting another. It streams the rank-0 log,
waits (two weeks at most by default), and exits 0 when the job succeeds, 1 when it fails (with its
conditions, events and last log lines), 2 on bad arguments. ``--dry-run`` prints the job's YAML and
contacts no cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from wukong.cli.options import add_config_options, config_from
from wukong.config import MODEL_NAMES


def _train_args(args: argparse.Namespace) -> list[str]:
    found = ["--data", args.data, "--output", args.output, "--config", args.config]
    found += ["--model", args.model] if args.model else []
    found += [item for override in args.overrides for item in ("--set", override)]
    extra = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    return found + extra


def _launch(args: argparse.Namespace) -> int:
    from wukong.launch import LaunchError, build_job
    from wukong.launch.resources import parse_node_selector
    from wukong.launch.submit import connect, job_resources

    config_from(args)  # a bad preset or --set fails here, in one line, not in every pod
    try:
        resources = job_resources(args.api, args.nodes, args.nproc_per_node, args.gpus_per_node)
        chosen = {
            "image": args.image,
            "namespace": args.namespace,
            "cpu": args.cpu,
            "memory": args.memory,
            "shm_size": args.shm_size,
            "node_selector": parse_node_selector(args.node_selector) if args.node_selector else None,
            "priority_class": args.priority_class,
            "queue": args.queue,
        }
        resources = dataclasses.replace(resources, **{k: v for k, v in chosen.items() if v is not None})
        runtime = args.runtime or os.environ.get("WUKONG_TRAINING_RUNTIME") or None
        job = build_job(args.api, _train_args(args), resources, runtime, args.name)
    except ValueError as error:
        print(f"wukong launch: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        from wukong.launch import pytorchjob, trainjob

        print((trainjob if args.api == "trainjob" else pytorchjob).to_yaml(job), end="")
        return 0
    waiting = {"poll_seconds": args.poll, **({"timeout_seconds": args.timeout} if args.timeout else {})}
    launcher = connect(args.api, resources.namespace, **waiting)
    try:
        if args.detach:
            name, _ = launcher.get_or_create(job)
            print(f"follow it with `kubectl -n {resources.namespace} get {launcher.resource} {name}`")
            return 0
        launcher.run(job, delete_on_success=args.delete_on_success)
    except LaunchError as error:
        print(f"wukong launch: {error}", file=sys.stderr)
        return 1
    print(f"{launcher.where(launcher.name_of(job))} succeeded; outputs under {args.output}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from wukong.launch.submit import APIS

    launch = commands.add_parser(
        "launch",
        help="train on Kubernetes as a TrainJob (Kubeflow Trainer v2) or PyTorchJob, and follow it",
        description=__doc__.split("\n\n", 1)[1],
        epilog="Defaults for image, namespace, node selector, runtime and queue come from WUKONG_IMAGE, "
        "WUKONG_NAMESPACE, WUKONG_NODE_SELECTOR, WUKONG_TRAINING_RUNTIME and WUKONG_QUEUE when set; the "
        "cluster from the pod's service account or the kubeconfig (KUBECONFIG).",
    )
    launch.add_argument("--data", required=True, metavar="URI", help="a prepared dataset the cluster can read")
    launch.add_argument("--output", required=True, metavar="URI", help="where the run writes (names the job)")
    add_config_options(launch)
    launch.add_argument("--model", choices=MODEL_NAMES, help="which model (default: the config's model.name)")
    launch.add_argument("--api", choices=APIS, default="trainjob", help="which operator runs it (%(default)s)")
    launch.add_argument("--nodes", type=int, default=1, help="machines (%(default)s)")
    launch.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per machine, one process each")
    launch.add_argument("--nproc-per-node", type=int, default=1, help="processes per machine without GPUs")
    launch.add_argument("--image", help="container image with the project installed")
    launch.add_argument("--namespace", help="namespace of the job")
    launch.add_argument("--cpu", help="CPUs per machine (default 4)")
    launch.add_argument("--memory", help="memory per machine (default 16Gi)")
    launch.add_argument("--shm-size", help="memory-backed /dev/shm per machine (default 8Gi)")
    launch.add_argument("--node-selector", metavar="KEY=VALUE[,KEY=VALUE]", help="node labels the pods need")
    launch.add_argument("--runtime", help="TrainJob: the (Cluster)TrainingRuntime (default wukong-torchrec)")
    launch.add_argument("--queue", help="a Kueue LocalQueue to submit through")
    launch.add_argument("--priority-class", help="PyTorchJob: the pods' priority class (TrainJob: the runtime's)")
    launch.add_argument("--name", help="the job's name (default: derived from --output)")
    launch.add_argument("--timeout", type=float, metavar="SECONDS", help="wait at most this long (two weeks)")
    launch.add_argument("--poll", type=float, default=15.0, metavar="SECONDS", help="status check interval")
    launch.add_argument("--dry-run", action="store_true", help="print the job's YAML; contact no cluster")
    launch.add_argument("--detach", action="store_true", help="submit (or find) the job and return")
    launch.add_argument("--delete-on-success", action="store_true", help="delete the job once it succeeded")
    launch.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: more `wukong train` flags")
    launch.set_defaults(func=_launch)
