"""What one webhook body can cost a worker in memory (issue 12, item 7).

    .venv/bin/python bench/webhook_memory.py [--megabytes 5]

On loopback only: gunicorn with one sync worker (SQLite), one installed tenant. It posts one
signed webhook per body and prints the answer and the worker's peak resident memory (Linux's
VmHWM; psutil finds the worker) before and after, so the cost of that one request shows. The
bodies: objects ``{}``, arrays ``[]``, strings ``""`` and Jira-like issue objects, each of about
--megabytes; each dense shape once more with as many items as CONNECT_WEBHOOK_MAX_JSON_VALUES
admits; then the costliest accepted bodies found (distinct keys; strings with an emoji, which
make Python keep each character in 4 bytes). Each body runs in a fresh worker: the peak is that
request's alone.
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
        # The costliest accepted bodies: distinct keys (no shared strings), and text whose one
        # emoji makes Python keep every character in 4 bytes.
        keys = b"{" + b",".join(b'"k%07d":0' % i for i in range(values - 3)) + b"}"
        print(measure(f"{values - 3} distinct keys", keys, Path(tmp)), flush=True)
        emoji = "\U0001f600".encode("utf-8")
        count = min(values - 4, size // 20)
        texts = b'{"items":[' + b",".join(b'"%07d' % i + emoji + b'xxxxxx"' for i in range(count)) + b"]}"
        print(measure(f"{count} emoji strings", texts, Path(tmp)), flush=True)
        one = b'{"text":"' + emoji + b"x" * (size - 32) + b'"}'
        print(measure("one emoji string", one, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
