"""The helpers the compose services run (deploy/): health checks and topic creation.

No Kafka here: the HTTP check talks to a real local server, the producing check's
bookkeeping uses a real state file, and the CLIs are run as processes.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.healthcheck import Unhealthy, check_http, record_growth

ROOT = Path(__file__).resolve().parents[2]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_check_passes_on_2xx_and_names_the_failure(http_server: str) -> None:
    check_http(f"{http_server}/ok", timeout=5)
    with pytest.raises(Unhealthy, match="HTTP 503"):
        check_http(f"{http_server}/down", timeout=5)
    with pytest.raises(Unhealthy, match="did not answer"):
        check_http(f"http://127.0.0.1:{_free_port()}/", timeout=2)
    with pytest.raises(Unhealthy, match="not an http"):
        check_http("file:///etc/passwd", timeout=2)


def test_producing_check_fails_only_after_a_quiet_window(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    record_growth(state, total=100, window=60, now=1000.0)  # first look: healthy
    record_growth(state, total=100, window=60, now=1050.0)  # quiet, within the window
    with pytest.raises(Unhealthy, match="nothing produced for 70s"):
        record_growth(state, total=100, window=60, now=1070.0)
    record_growth(state, total=180, window=60, now=1080.0)  # grew: healthy again
    record_growth(state, total=180, window=60, now=1130.0)
    state.write_text("not json")
    record_growth(state, total=180, window=60, now=5000.0)  # a broken file restarts the clock


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_healthcheck_cli_exit_codes(http_server: str) -> None:
    ok = _run("deploy.healthcheck", "http", f"{http_server}/ok")
    assert ok.returncode == 0, ok.stderr
    down = _run("deploy.healthcheck", "http", f"{http_server}/down")
    assert down.returncode == 1
    assert down.stderr.strip().splitlines() == [f"unhealthy: {http_server}/down answered HTTP 503"]
    bad = _run("deploy.healthcheck", "sideways")
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    )


def test_create_topics_bad_input_is_one_line() -> None:
    bad_flag = _run("deploy.create_topics", "--wait", "soon")
    assert bad_flag.returncode == 2
    assert len(bad_flag.stderr.strip().splitlines()) == 1 and "soon" in bad_flag.stderr
    unreachable = subprocess.run(
        [sys.executable, "-m", "deploy.create_topics", "--wait", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=90,
        check=False,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}"},
    )
    assert unreachable.returncode == 1
    last = unreachable.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not create topics at 127.0.0.1:")
    assert "KAFKA_BOOTSTRAP_SERVERS" in last and "Traceback" not in unreachable.stderr
    assert "rdkafka" not in unreachable.stderr, "librdkafka noise hides the error line"
