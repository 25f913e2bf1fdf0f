"""scripts/demo.sh (make demo): a busy port is detected and avoided, success is reported only for
the server the demo started, and the development-key warning prints once."""

import http.server
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _OtherServer(http.server.BaseHTTPRequestHandler):
    """Stands for `make run` left open: answers 200 to everything."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        return


def test_a_busy_port_is_avoided_and_said_in_one_line(tmp_path):
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherServer)
    busy = other.server_address[1]
    threading.Thread(target=other.serve_forever, daemon=True).start()
    environment = {  # a newcomer's shell, still holding a tunnel's settings the demo must not use
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "ALLOWED_HOSTS": "old-tunnel.example.com",
        "CACHE_URL": "redis://127.0.0.1:1/0",
        "PORT": str(busy),
        "KEY_PORT": str(_free_port()),
        "JIRA_PORT": str(_free_port()),
        "DEMO_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }
    demo = subprocess.Popen(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=environment,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    watchdog = threading.Timer(240, os.killpg, (demo.pid, signal.SIGKILL))  # a hang ends the read
    watchdog.start()
    try:
        for line in demo.stdout:
            output.append(line)
            if "press Ctrl-C" in line:
                break
    finally:
        watchdog.cancel()
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=30)
        other.shutdown()
    text = "".join(output)
    busy_lines = [line for line in output if f"port {busy} is busy" in line]
    assert len(busy_lines) == 1, text[-3000:]
    used = int(re.search(r"uses port (\d+) instead", busy_lines[0]).group(1))
    assert used != busy
    assert "36 passed, 0 failed" in text
    # The deliveries: acknowledged at once, then processed by the worker, retried, parked.
    assert "4 passed, 0 failed" in text
    for step in ("receiver fails once: retried, then done", "receiver always fails: parked as failed"):
        assert any(step in line and line.startswith("[ok  ]") for line in output), step
    # Forge remote calls, signed with the simulator's JWKS (FORGE_APP_ID set by the demo).
    assert "11 passed, 0 failed" in text
    assert f"Admin:        http://127.0.0.1:{used}/admin/" in text
    assert text.count("tenants.W001") == 1 and text.count("lifecycle.W004") == 1
