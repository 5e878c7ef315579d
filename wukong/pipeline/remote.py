"""Runs and recurring runs on a Kubeflow Pipelines server, through ``kfp.Client``.

Scheduled retraining: a 6-field cron (seconds first, as KFP's scheduler expects), one run at a time
(``max_concurrency=1``), no catch-up of missed runs, and caching off so that each run reads new data.
Connection and authentication problems become one-line :class:`PipelineError` messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from wukong.data.errors import DataError


class PipelineError(DataError):
    """A Kubeflow Pipelines request failed (unreachable host, refused credentials, bad arguments)."""


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["rows=1000", "overrides=[\\"a=1\\"]"]`` → ``{"rows": 1000, "overrides": ["a=1"]}`` (values read as YAML)."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"--param {item!r}: expected NAME=VALUE")
        params[key] = yaml.safe_load(value) if value else ""
    return params


def check_params(params: dict[str, Any], package: Path) -> None:
    spec = next(yaml.safe_load_all(package.read_text()))  # the pipeline spec; a platform spec may follow
    known = set(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(params) - known)
    if unknown:
        raise PipelineError(
            f"unknown pipeline parameters {', '.join(unknown)}; the pipeline takes: {', '.join(sorted(known))}"
        )


def check_cron(cron: str) -> None:
    if len(cron.split()) != 6:
        raise PipelineError(
            f"--cron {cron!r}: KFP needs 6 fields (seconds minutes hours day month weekday), e.g. '0 0 3 * * *'"
        )


def probe(host: str, timeout: float = 10.0) -> None:
    """One quick request to the API's health endpoint, so that an unreachable host or refused
    credentials fail at once with a clear reason (kfp.Client retries its own probe for ~25 s and
    then reports neither)."""
    import urllib.error
    import urllib.request

    url = host.rstrip("/") + "/apis/v2beta1/healthz"
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise PipelineError(
                f"{host}: HTTP {error.code}: authentication refused; check the token or cookies for this host"
            ) from None
        # Other statuses (404 behind some proxies) are left for kfp.Client to judge.
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PipelineError(f"{host}: cannot connect to Kubeflow Pipelines ({reason}); check --host") from None


def connect(host: str, factory: Callable[..., Any] | None = None) -> Any:
    if factory is None:
        import kfp

        probe(host)
        factory = kfp.Client
    try:
        return factory(host=host)
    except Exception as error:
        raise PipelineError(f"{host}: cannot connect to Kubeflow Pipelines ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    status = getattr(error, "status", None)
    if status in (401, 403):
        return f"HTTP {status}: authentication refused; check the token or cookies for this host"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def _call(host: str, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PipelineError:
        raise
    except Exception as error:
        raise PipelineError(f"{host}: {what} failed ({_reason(error)})") from None


def submit(client: Any, host: str, package: Path, params: dict[str, Any], experiment: str, run_name: str | None) -> str:
    check_params(params, package)
    result = _call(
        host,
        "submitting the run",
        lambda: client.create_run_from_pipeline_package(
            str(package), arguments=params, run_name=run_name, experiment_name=experiment, enable_caching=False
        ),
    )
    return getattr(result, "run_id", str(result))


def schedule(
    client: Any, host: str, package: Path, params: dict[str, Any], experiment: str, name: str, cron: str
) -> str:
    check_cron(cron)
    check_params(params, package)
    experiment_id = _call(
        host, "creating the experiment", lambda: client.create_experiment(name=experiment).experiment_id
    )
    run = _call(
        host,
        "creating the recurring run",
        lambda: client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=params,
            pipeline_package_path=str(package),
            enable_caching=False,
            enabled=True,
        ),
    )
    return getattr(run, "recurring_run_id", str(run))


def schedules(client: Any, host: str, action: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    """List recurring runs, or enable / disable / delete one (then list)."""
    if action:
        if action not in ("enable", "disable", "delete"):
            raise PipelineError(f"unknown action {action!r}; use enable, disable or delete")
        operation = getattr(client, f"{action}_recurring_run")
        _call(host, f"{action} of recurring run {run_id}", lambda: operation(run_id))
    response = _call(host, "listing recurring runs", lambda: client.list_recurring_runs(page_size=100))
    runs = getattr(response, "recurring_runs", None) or []
    return [
        {
            "id": getattr(r, "recurring_run_id", None),
            "name": getattr(r, "display_name", None),
            "status": str(getattr(r, "status", "")),
            "cron": getattr(getattr(getattr(r, "trigger", None), "cron_schedule", None), "cron", None),
        }
        for r in runs
    ]


def describe(runs: list[dict[str, Any]]) -> str:
    return json.dumps(runs, indent=1)
