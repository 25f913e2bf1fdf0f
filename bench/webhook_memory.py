"""What one webhook body can cost a worker in memory (issue 12, item 7).

    .venv/bin/python bench/webhook_memory.py [--megabytes 5]

On loopback only: gunicorn with one sync worker (SQLite), one installed tenant. For each body
shape (objects ``{}``, arrays ``[]``, strings ``""``, and Jira-like issue objects), each of about
--megabytes, and for each dense shape once more with as many items as
CONNECT_WEBHOOK_MAX_JSON_VALUES admits (the most memory an accepted body can cost), it posts one
signed webhook and prints the answer and the worker's peak resident
memory (psutil; Linux's VmHWM) before and after, so the cost of that one request shows.
Each shape runs in a fresh worker: the peak is that request's alone.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import psutil
import requests

from loopback import serve

ISSUE = b'{"self":"https://x.atlassian.net/rest/api/2/issue/10000","id":"10000","key":"ABC-1"}'
SHAPES = {"objects": b"{}", "arrays": b"[]", "strings": b'""', "jira-like": ISSUE}


def body_of(item: bytes, size: int, values: int | None = None) -> bytes:
    count = max((size - 16) // (len(item) + 1), 1)
    if values is not None:  # json_values_bound: each item adds its punctuation and one comma
        per_item = 1 + item.count(b",") + item.count(b"[") + item.count(b"{")
        count = min(count, (values - 3) // per_item)  # the object, the array and the bound's "+ 1"
    return b'{"items":[' + b",".join([item] * count) + b"]}"


def peak_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM: Linux only")


def measure(label: str, body: bytes, folder: Path) -> str:
    path = "/webhooks/jira:issue_updated"
    with serve(folder, {"WEB_CONCURRENCY": "1", "CONNECT_WEBHOOK_MAX_BODY": str(len(body) + 1024)}) as server:
        session = requests.Session()

        def post(body: bytes) -> int:
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"JWT {server.sign('POST', path)}",
                "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
            }
            return session.post(server.url + path, data=body, headers=headers, timeout=60).status_code

        post(b'{"warm":"up"}')  # imports, connections, first-request work
        (worker,) = psutil.Process(server.process.pid).children()
        before = peak_kb(worker.pid)
        status = post(body)
        after = peak_kb(worker.pid)
    return (
        f"{label:>24}: {len(body) / 1048576:.1f} MB body -> {status}; worker peak "
        f"{before / 1024:.0f} MB before, {after / 1024:.0f} MB after (+{(after - before) / 1024:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=5)
    args = parser.parse_args()
    size = int(args.megabytes * 1024 * 1024)
    from lifecycle.conf import ConnectSettings

    values = ConnectSettings.WEBHOOK_MAX_JSON_VALUES
    with tempfile.TemporaryDirectory() as tmp:
        for shape, item in SHAPES.items():
            print(measure(shape, body_of(item, size), Path(tmp)), flush=True)
        for shape in ("objects", "arrays", "strings"):
            label = f"{shape} at {values} values"
            print(measure(label, body_of(SHAPES[shape], size, values), Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
