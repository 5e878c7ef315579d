"""`wukong pipeline submit / schedule / schedules` against a recording stand-in for kfp.Client."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.wukong_pipeline import COMPILED
from tests.conftest import free_port
from wukong.cli import main
from wukong.pipeline import remote


class RecordingClient:
    """Records the calls the CLI makes, answering like kfp.Client's v2beta1 objects."""

    def __init__(self, host: str) -> None:
        self.host, self.calls = host, []

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
        self.calls.append(("run", pipeline_file, kwargs))
        return SimpleNamespace(run_id="run-1")

    def create_experiment(self, name):
        self.calls.append(("experiment", name))
        return SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("recurring", kwargs))
        return SimpleNamespace(recurring_run_id="rr-1")

    def list_recurring_runs(self, page_size):
        trigger = SimpleNamespace(cron_schedule=SimpleNamespace(cron="0 0 3 * * *"))
        return SimpleNamespace(
            recurring_runs=[
                SimpleNamespace(recurring_run_id="rr-1", display_name="nightly", status="ENABLED", trigger=trigger)
            ]
        )

    def disable_recurring_run(self, run_id):
        self.calls.append(("disable", run_id))
        return {}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> RecordingClient:
    made = {}

    def factory(host: str, factory=None):
        made["client"] = RecordingClient(host)
        return made["client"]

    monkeypatch.setattr(remote, "connect", factory)
    yield made


def test_submit_passes_parameters_and_turns_caching_off(client, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "pipeline",
            "submit",
            "--host",
            "http://kfp:8080",
            "--param",
            "rows=5000",
            "--param",
            "overrides=[train.epochs=2]",
            "--param",
            "dataset_uri=s3://b/d",
            "--run-name",
            "try",
        ]
    )
    assert code == 0 and "submitted run run-1" in capsys.readouterr().out
    ((kind, package, kwargs),) = client["client"].calls
    assert kind == "run" and Path(package) == COMPILED
    assert kwargs == {
        "arguments": {"rows": 5000, "overrides": ["train.epochs=2"], "dataset_uri": "s3://b/d"},
        "run_name": "try",
        "experiment_name": "wukong",
        "enable_caching": False,
    }


def test_schedule_is_one_at_a_time_without_catchup(client) -> None:
    assert (
        main(
            [
                "pipeline",
                "schedule",
                "--host",
                "http://kfp",
                "--cron",
                "0 0 3 * * *",
                "--name",
                "nightly",
                "--param",
                "source=movielens",
            ]
        )
        == 0
    )
    calls = client["client"].calls
    assert calls[0] == ("experiment", "wukong")
    kind, kwargs = calls[1]
    assert kind == "recurring"
    assert kwargs["cron_expression"] == "0 0 3 * * *" and kwargs["max_concurrency"] == 1
    assert kwargs["no_catchup"] is True and kwargs["enable_caching"] is False and kwargs["enabled"] is True
    assert kwargs["experiment_id"] == "exp-1" and kwargs["job_name"] == "nightly"
    assert kwargs["params"] == {"source": "movielens"}


def test_schedules_list_and_disable(client, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline", "schedules", "--host", "http://kfp", "--disable", "rr-1"]) == 0
    assert client["client"].calls == [("disable", "rr-1")]
    assert '"cron": "0 0 3 * * *"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["schedule", "--host", "h", "--cron", "0 3 * * *"], "KFP needs 6 fields"),
        (["submit", "--host", "h", "--param", "nope=1"], "unknown pipeline parameters nope"),
        (["submit", "--host", "h", "--param", "rows"], "expected NAME=VALUE"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(client, argv, message, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unreachable_host_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    assert main(["pipeline", "submit", "--host", host]) == 2
    err = capsys.readouterr().err.strip()
    assert host in err and len(err.splitlines()) == 1


def test_refused_authentication_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A stand-in KFP API server that answers 401 to everything, as one behind an auth proxy does."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Refuse(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            body = b'{"error": "unauthenticated", "code": 16}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _refuse

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.1:{server.server_port}"
        assert main(["pipeline", "submit", "--host", host]) == 2
        err = capsys.readouterr().err.strip()
        assert "HTTP 401: authentication refused" in err and len(err.splitlines()) == 1
    finally:
        server.shutdown()
