"""A loopback install-key server for the benchmark: connect_testkit.KeyServer in its own process.

    python bench/keyserver.py OUT.json

Generates an RSA key, publishes it under a fresh kid, writes {"url", "kid", "private_key_pem"} to
OUT.json (mode 0600, inside the benchmark's temporary folder) and serves until SIGTERM/SIGINT or
until its standard input is closed (so it never outlives the orchestrator).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization

from connect_testkit import KeyServer, generate_rsa_key


def main(out: str) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    key = generate_rsa_key()
    kid = f"bench/{uuid.uuid4()}"  # a kid with '/', as Atlassian issues them since Nov 2024
    server = KeyServer().start()
    try:
        server.publish(kid, key)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        tmp = out + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"url": server.url, "kid": kid, "private_key_pem": pem}, fh)
        os.replace(tmp, out)

        def watch_stdin() -> None:  # the orchestrator died: stop too
            try:
                sys.stdin.read()
            finally:
                stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1])
