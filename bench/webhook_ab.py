"""A/B the verified webhook of two commits, side by side in one run (interleaved rounds).

    .venv/bin/python bench/webhook_ab.py BASE_REF [--rounds 4] [--duration 8] [--workers 2]

Checks BASE_REF out into a temporary folder, and for it and for this working tree: a PostgreSQL
database of its own (migrated), one tenant, gunicorn (``--workers`` sync workers) on loopback
with Redis as the cache; for a side that has the task pipeline also one task worker
(``manage.py db_worker``, or RQ's with ``--head-env TASKS_RQ_URL=...``) processing the
deliveries while the load runs, as in production (``--no-task-worker``: none). Then wrk
(bench/wrk.lua, 32 connections, a unique X-Atlassian-Webhook-Identifier per request) loads each
in turn, ``--rounds`` times, and the table gives each round's req/s, the medians and
the ratio HEAD / BASE, with the CPU per request of the server, its task worker, PostgreSQL and
Redis (psutil). Loopback only; needs wrk, PostgreSQL (127.0.0.1:5432, user postgres,
trust) and Redis (127.0.0.1:6379), like ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connect_testkit import sign_tenant  # noqa: E402

PY = sys.executable
SECRET = "ab-bench-secret-0123456789abcdef0123456789abcdef"  # noqa: S105 - a bench tenant
CLIENT_KEY = "ab-bench-tenant"
HOOK = "/webhooks/jira:issue_created"
BODY = json.dumps(
    {"webhookEvent": "jira:issue_created", "issue": {"key": "AB-1", "fields": {"summary": "x" * 200}}}
)
KEYS = "q8Mn2ZQy0E3cdj8B3zZ6m1cJ8vZ0kQ2xN9mVb7a1c3E="
BASE_URL = "https://ab-bench.example.test"
COUNT = "SELECT count(*) FROM tenants_webhookdelivery"
COUNT_WITH_STATES = "SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM tenants_webhookdelivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database: str, redis_db: int, port: int) -> dict[str, str]:
    """The server's environment; ``database`` is a PostgreSQL database name or an SQLite file path."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "CONNECT_READ_DOTENV": "0",
        "DEBUG": "0",
        "SECRET_KEY": "ab-bench-secret-key-0123456789-0123456789",
        "CONNECT_BASE_URL": BASE_URL,
        "ALLOWED_HOSTS": "127.0.0.1",
        "TENANT_SECRET_KEYS": KEYS,
        "DATABASE_URL": (
            f"sqlite:///{database}"
            if database.startswith("/")
            else f"postgres://postgres@127.0.0.1:5432/{database}"
        ),
        "CACHE_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "GUNICORN_ACCESS_LOG": "off",
        "CONNECT_JWT_MAX_LIFETIME": "7200",
    }


class Side:
    """One commit's server: its folder, database, gunicorn and (if it has one) task worker."""

    def __init__(self, name: str, folder: Path, workers: int, redis_db: int, tmp: Path, sqlite: bool) -> None:
        self.name, self.folder, self.tmp = name, folder, tmp
        self.port = free_port()
        self.database = str(tmp / f"{name}.sqlite3") if sqlite else f"connect_ab_{name}"
        self.env = {**environment(self.database, redis_db, self.port), "WEB_CONCURRENCY": str(workers)}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.task_worker = True

    def run(self, *args: str) -> None:
        subprocess.run([PY, "manage.py", *args], cwd=self.folder, env=self.env, check=True, timeout=300)

    def prepare(self) -> None:
        for sql in (f"DROP DATABASE IF EXISTS {self.database}", f"CREATE DATABASE {self.database}"):
            if not self.database.startswith("/"):
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
        self.run("migrate", "-v0")
        body = {
            "key": "django-connect-app",
            "clientKey": CLIENT_KEY,
            "sharedSecret": SECRET,
            "baseUrl": "https://ab-bench.atlassian.net",
            "productType": "jira",
            "eventType": "installed",
        }
        self.run(
            "shell", "-v0", "--no-startup", "-c", f"from tenants import services; services.install({body!r})"
        )

    @property
    def has_tasks(self) -> bool:
        return (self.folder / "tenants" / "tasks.py").exists()

    def start(self) -> None:
        log = (self.tmp / f"{self.name}-gunicorn.log").open("w")
        self.processes.append(
            subprocess.Popen(
                [PY, "-m", "gunicorn", "connectsite.wsgi"],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        )
        if self.has_tasks and self.task_worker:
            worker_log = (self.tmp / f"{self.name}-worker.log").open("w")
            rq = ["rqworker", "--with-scheduler", "--job-class", "django_tasks_rq.Job", "default"]
            db = ["db_worker", "--no-reload", "--interval", "0.2"]
            self.processes.append(
                subprocess.Popen(
                    [PY, "manage.py", *(rq if self.env.get("TASKS_RQ_URL") else db)],
                    cwd=self.folder,
                    env=self.env,
                    stdout=worker_log,
                    stderr=worker_log,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        raise SystemExit(f"{self.name}: gunicorn did not start; see {self.tmp}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)

    def counts(self) -> str:
        query = COUNT_WITH_STATES if self.has_tasks else COUNT
        if self.database.startswith("/"):
            import sqlite3

            with sqlite3.connect(self.database) as db:
                sqlite_query = query.replace("count(*) FILTER (WHERE state = 'done')", "sum(state = 'done')")
                return "|".join(str(v) for v in db.execute(sqlite_query).fetchone())
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", self.database, "-Atc", query],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


def cpu_seconds(side: Side) -> dict[str, float]:
    """CPU seconds used so far by this side's gunicorn (master and workers) and task worker, and
    by every PostgreSQL and Redis process of the machine (psutil)."""
    import psutil

    totals = {"django": 0.0, "task worker": 0.0, "postgres": 0.0, "redis": 0.0}
    for process in side.processes:
        try:
            parent = psutil.Process(process.pid)
            family = [parent, *parent.children(recursive=True)]
            kind = "django" if "gunicorn" in " ".join(parent.cmdline()) else "task worker"
            totals[kind] += sum(sum(p.cpu_times()[:2]) for p in family)
        except psutil.NoSuchProcess:
            continue
    for process in psutil.process_iter(["name"]):
        name = process.info["name"] or ""
        kind = "postgres" if name.startswith("postgres") else "redis" if name.startswith("redis") else ""
        if kind:
            try:
                totals[kind] += sum(process.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
    return totals


def wrk(side: Side, conf: Path, seconds: float) -> dict[str, float]:
    before = cpu_seconds(side)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c32",
            f"-d{round(seconds)}s",
            "-s",
            str(ROOT / "bench" / "wrk.lua"),
            f"http://127.0.0.1:{side.port}{HOOK}",
        ],
        env={**os.environ, "BENCH_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    found = re.search(r"BENCH_JSON (\{.*\})", out.stdout)
    if not found:
        raise SystemExit(out.stdout + out.stderr)
    data = json.loads(found.group(1))
    kinds = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    errors = sum(data[k] for k in kinds)
    if errors:
        print(f"  {side.name}: " + ", ".join(f"{k} {data[k]}" for k in kinds if data[k]), file=sys.stderr)
    after = cpu_seconds(side)
    per_request = {k: (after[k] - before[k]) / max(1, data["requests"]) * 1e6 for k in after}
    return {
        **{f"cpu_{k}": v for k, v in per_request.items()},
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "p50": data["p50_us"],
        "p99": data["p99_us"],
        "errors": errors,
    }


def lua_conf(tmp: Path, name: str) -> Path:
    tokens = [
        sign_tenant(
            SECRET, client_key=CLIENT_KEY, method="POST", url=HOOK, lifetime=7000, now=time.time() - i
        )
        for i in range(50)
    ]
    conf = tmp / f"{name}.lua"
    quoted = ", ".join(json.dumps(t) for t in tokens)
    conf.write_text(
        "return {method = 'POST', path = '" + HOOK + "', body = " + json.dumps(BODY) + ", "
        "content_type = 'application/json', tokens = {" + quoted + "}, unique_ids = true, "
        f"id_prefix = '{name}-{int(time.time())}'}}\n"
    )
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare with (e.g. HEAD~1)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per round per side")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per side")
    parser.add_argument("--sqlite", action="store_true", help="SQLite files instead of PostgreSQL databases")
    parser.add_argument(
        "--head-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the working tree's side only (e.g. TASKS_RQ_URL=redis://...)",
    )
    parser.add_argument(
        "--no-task-worker",
        action="store_true",
        help="leave the task workers off during the load (the request path alone)",
    )
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="webhook-ab-"))
    base_folder = tmp / "base"
    base_folder.mkdir()
    archive = subprocess.run(
        ["git", "archive", options.base], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(base_folder)], input=archive, check=True)
    base = subprocess.run(
        ["git", "rev-parse", "--short", options.base], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    sides = [
        Side("base", base_folder, options.workers, 12, tmp, options.sqlite),
        Side("head", ROOT, options.workers, 13, tmp, options.sqlite),
    ]
    for side in sides:
        side.task_worker = not options.no_task_worker
    sides[1].env.update(item.split("=", 1) for item in options.head_env)
    results: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    try:
        for side in sides:
            side.prepare()
            side.start()
        for round_ in range(options.rounds + 1):  # round 0 warms both up and is not counted
            for side in sides if round_ % 2 else reversed(sides):
                measured = wrk(side, lua_conf(tmp, side.name), options.duration if round_ else 3)
                if round_:
                    results[side.name].append(measured)
        time.sleep(3)  # let the task worker catch up before counting
        workers = options.workers
        print(f"verified webhook, {workers} gunicorn workers, wrk -c32, {options.rounds} interleaved rounds")
        header = ("side", "commit", "req/s per round", "median", "p50 ms", "p99 ms", "errors", "rows (done)")
        print("{:<6} {:<12} {:<34} {:>7} {:>7} {:>7} {:>6}  {}".format(*header))
        medians = {}
        for side in sides:
            rows = results[side.name]
            medians[side.name] = statistics.median(r["rps"] for r in rows)
            per_round = " ".join(str(round(r["rps"])) for r in rows)
            p50 = statistics.median(r["p50"] for r in rows) / 1000
            p99 = statistics.median(r["p99"] for r in rows) / 1000
            errors = sum(r["errors"] for r in rows)
            commit = base if side.name == "base" else "working tree"
            line = (side.name, commit, per_round, round(medians[side.name]), p50, p99, errors, side.counts())
            print("{:<6} {:<12} {:<34} {:>7} {:>7.2f} {:>7.2f} {:>6}  {}".format(*line))
        print(
            "CPU per request, µs (medians): "
            + "; ".join(
                f"{side.name}: "
                + ", ".join(
                    f"{k[4:]} {statistics.median(r[k] for r in results[side.name]):.0f}"
                    for k in results[side.name][0]
                    if k.startswith("cpu_")
                )
                for side in sides
            )
        )
        print(f"ratio head / base (medians): {medians['head'] / medians['base']:.3f}")
    finally:
        for side in sides:
            side.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
