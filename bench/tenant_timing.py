"""Does the answer time tell whether a clientKey exists? (issue 12, item 7)

    .venv/bin/python bench/tenant_timing.py [--pairs 400]

On loopback: gunicorn with one sync worker (SQLite) and one installed tenant. It sends webhooks
with a wrong signature, alternating an unknown clientKey and the installed one (interleaved
pairs, so drift hits both alike), and prints each side's median and their ratio. Before the
decoy work an unknown clientKey answered about 20% faster.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from loopback import CLIENT_KEY, serve, sign_tenant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    args = parser.parse_args()
    path = "/webhooks/jira:issue_created"
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), {"WEB_CONCURRENCY": "1"}) as server:
        session = requests.Session()
        times: dict[str, list[float]] = {"unknown": [], "known": []}
        for index in range(args.pairs):
            for side, client_key in (("unknown", "no-such-tenant"), ("known", CLIENT_KEY)):
                token = sign_tenant(
                    "z" * 40, client_key=client_key, method="POST", url=path, now=time.time() + index % 60
                )
                started = time.perf_counter()
                response = session.post(
                    server.url + path,
                    data="{}",
                    headers={"Content-Type": "application/json", "Authorization": f"JWT {token}"},
                    timeout=10,
                )
                times[side].append(time.perf_counter() - started)
                if response.status_code != 401:
                    raise SystemExit(f"expected 401, got {response.status_code}")
    unknown, known = statistics.median(times["unknown"]), statistics.median(times["known"])
    print(
        f"{args.pairs} pairs: unknown clientKey median {unknown * 1000:.2f} ms, installed clientKey "
        f"(wrong signature) {known * 1000:.2f} ms, ratio {unknown / known:.3f}"
    )


if __name__ == "__main__":
    main()
