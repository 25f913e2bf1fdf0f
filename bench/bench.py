"""`make bench`: load-test the verified Connect endpoints and compare with atlassian-connect-express.

Run from the repository root with the project's virtualenv (bench/run.sh does that):

    .venv/bin/python bench/bench.py [--duration 10] [--warmup 2] [--connections 32] ...

What it does, in order (each step is logged as it runs):

1. setup: wrk (apt-get install -y wrk when missing), a fresh PostgreSQL database ``connect_bench``,
   Redis db 5 (Django cache) and db 6 (ACE's store) flushed, a loopback install-key server
   (bench/keyserver.py) whose kid is pre-fetched with ``manage.py connect_keys fetch``, 10 tenants,
   and atlassian-connect-express installed from npm into a temporary folder;
2. ACE: the webhook load against atlassian-connect-express (a node cluster of 2 processes);
3. the "trivial view" ceiling: GET /bench/noop (a 204 view behind the same middleware, on a
   separate gunicorn with bench/noop_settings.py);
4. gunicorn (connectsite.wsgi, gunicorn.conf.py, WEB_CONCURRENCY=2, DEBUG off): the ceilings
   /healthz and /atlassian-connect.json, the verified webhook, ``enabled``, the signed ``installed``
   with a cached key, and a micro-benchmark of the verification functions (bench/djtasks.py micro);
5. tenants: a copy of the database gets 100,000 tenants (bulk_create); the webhook runs against the
   10-tenant and the 100,000-tenant database in turn, A B A B;
6. the targets, PASS/MISS; when one is missed (or with --profile always), py-spy samples the gunicorn
   workers under the matching load; then gunicorn's sync and gthread workers, A B A B (not a target);
7. the table on stdout and bench/RESULTS.md.

Everything it starts (key server, gunicorn, node) is stopped, the databases dropped, the Redis dbs
flushed and the temporary folder removed, also on failure or Ctrl-C. Two runs at once are refused.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import itertools
import json
import os
import platform
import random
import re
import runpy
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
PY = sys.executable
VENV_BIN = Path(PY).parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from connect_testkit import sign_install, sign_tenant  # noqa: E402

BASE_URL = "https://bench.example.test"
APP_KEY = json.loads((ROOT / "atlassian-connect.json").read_text())["key"]
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "connect_bench"
LARGE_DB = "connect_bench_large"  # a copy of DB_NAME with --tenants tenants
DJANGO_REDIS = "redis://127.0.0.1:6379/5"
ACE_REDIS = "redis://127.0.0.1:6379/6"
WEBHOOK_PATH = "/webhooks/jira:issue_created?issueKey=ABC-1"
TOKEN_LIFETIME = 1800  # seconds: longer than the whole run, within CONNECT_JWT_MAX_LIFETIME
MAX_LIFETIME = 3600
SAMPLED_TENANTS = 1000  # tenants the large run spreads its requests over (round-robin tokens)
LOCK_PATH = Path(tempfile.gettempdir()) / "connect-bench.lock"
NOISY_CPU = 30.0  # % of a core used by processes outside the benchmark: the run was disturbed
# Inherited variables that would change the server under test; the benchmark sets its own.
DROPPED_ENV = (
    "CONNECT_",
    "TENANT_",
    "DATABASE_",
    "CACHE_",
    "GUNICORN_",
    "SECURE_",
    "DJANGO_",
    "WEB_CONCURRENCY",
    "LOG_LEVEL",
    "ALLOWED_HOSTS",
    "DEBUG",
    "SECRET_KEY",
    "HOST",
    "PORT",
    "FORWARDED_ALLOW_IPS",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lua_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def tenant_key(index: int) -> str:
    return f"bench-tenant-{index:06d}"


def tenant_base_url(index: int) -> str:
    return f"https://bench-{index:06d}.atlassian.net"


def webhook_body() -> bytes:
    """A jira:issue_created body of a realistic shape (about 1.5 KB)."""
    user = {
        "self": "https://bench-000000.atlassian.net/rest/api/2/user?accountId=557058:f58131cb",
        "accountId": "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
        "displayName": "Bench User",
        "active": True,
        "timeZone": "Europe/Paris",
        "accountType": "atlassian",
    }
    fields = {
        "summary": "Benchmark issue",
        "description": "Created by the benchmark. " * 8,
        "issuetype": {"id": "10002", "name": "Task", "subtask": False},
        "project": {"id": "10000", "key": "ABC", "name": "Alphabet", "projectTypeKey": "software"},
        "priority": {"id": "3", "name": "Medium"},
        "status": {"id": "10000", "name": "To Do", "statusCategory": {"id": 2, "key": "new"}},
        "labels": ["bench", "webhook"],
        "creator": user,
        "reporter": user,
        "created": "2024-11-28T12:00:00.000+0000",
        "updated": "2024-11-28T12:00:00.000+0000",
    }
    body = {
        "timestamp": 1732800000000,
        "webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created",
        "user": user,
        "issue": {
            "id": "10001",
            "self": "https://bench-000000.atlassian.net/rest/api/2/10001",
            "key": "ABC-1",
            "fields": fields,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


# --- Processes ------------------------------------------------------------------------------------------


class Proc:
    """A child process in its own session; stop() ends it and its own process group, nothing else."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        cwd: Path = ROOT,
        keep_stdin: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if keep_stdin else subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 25.0) -> None:
        if self.popen.stdin:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {timeout:.0f} s: SIGKILL to its process group {self.pid}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Members of its group left behind by a leader that died (the group keeps the leader's id).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{proc.tail()}" if proc else "")
    )


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 600) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


# --- CPU accounting: who used the 2 cores during a scenario -------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, CPU ticks, start time, label) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            rest = stat[stat.rindex(")") + 2 :].split()
            # utime + stime only: a parent's cutime would bring in a whole exited child (PostgreSQL
            # backends end when CONN_MAX_AGE expires), not just its share of this window.
            ticks = int(rest[11]) + int(rest[12])
            if entry == str(os.getpid()):  # our reaped children (wrk, curl), under the pseudo pid -1
                table[-1] = (0, int(rest[13]) + int(rest[14]), 0, "wrk")
            ppid, start = int(rest[1]), int(rest[19])
            label = "kernel" if ppid == 2 or entry == "2" else comm
            if comm.startswith("postgres"):
                cmdline = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                if f" {DB_NAME} " in cmdline or f" {LARGE_DB} " in cmdline:
                    label = "postgres:bench"  # a backend serving the benchmark's database
                elif re.search(r"\(\d+\)|\[local\]", cmdline):
                    label = "postgres:other"  # a backend serving someone else
                else:
                    label = "postgres:aux"  # postmaster, WAL writer, checkpointer...: shared, counted as ours
                    # The postmaster reaps the backends: one that ended (CONN_MAX_AGE) left its CPU here.
                    ticks += int(rest[13]) + int(rest[14])
            table[int(entry)] = (ppid, ticks, start, label)
    return table


def _cpu_ticks() -> tuple[int, int, int, int]:
    """The machine's ticks so far: all; running processes (user, nice, system); idle (with I/O
    wait); stolen by the hypervisor."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), sum(fields[:3]), fields[3] + fields[4], fields[7]


class CpuMeter:
    """CPU used during a window in % of one core (the machine has nproc x 100), split by who used it."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.before = _proc_table()
        self.total, self.busy, self.idle, self.steal = _cpu_ticks()

    def stop(self) -> dict[str, float]:
        after, (total, busy, idle, steal) = _proc_table(), _cpu_ticks()
        span = max(total - self.total, 1)
        ours = _descendants(after, os.getpid())
        server = _descendants(after, self.server_pid) if self.server_pid else set()
        used: collections.Counter[str] = collections.Counter()
        for pid, (_ppid, ticks, start, label) in after.items():
            same = pid in self.before and self.before[pid][2] == start  # not a recycled pid
            delta = ticks - (self.before[pid][1] if same else 0)
            if delta <= 0:
                continue
            if pid in server:
                used["server"] += delta
            elif label in ("postgres:bench", "postgres:aux"):
                used["postgres"] += delta
            elif label == "redis-server":
                used["redis"] += delta
            elif label == "wrk":
                used["wrk"] += delta
            elif label == "kernel":
                used["kernel"] += delta
            elif pid in ours:
                used["bench"] += delta
            else:
                used["other"] += delta
        # A backend that ended in the window shows in the postmaster's cutime with its whole life:
        # take back what it had used before the window.
        for pid, (_ppid, ticks, start, label) in self.before.items():
            if (
                label.startswith("postgres:")
                and label != "postgres:aux"
                and after.get(pid, (0, 0, -1))[2] != start
            ):
                used["postgres"] -= ticks
        used["postgres"] = max(used["postgres"], 0)
        # CPU of processes that started and ended within the window (another user's test suite forks
        # them by the hundred) shows in the machine's total only.
        used["other"] += max(0, busy - self.busy - sum(used.values()))
        used["idle"] = idle - self.idle
        used["steal"] = steal - self.steal
        cores = os.cpu_count() or 1
        return {name: round(100.0 * cores * ticks / span, 1) for name, ticks in used.items()}


def _descendants(table: dict[int, tuple[int, int, int, str]], root: int) -> set[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, *_rest) in table.items():
        children[ppid].append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children[todo.pop()]:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def busy_elsewhere(seconds: float = 2.0) -> float:
    """% of a core used by processes outside this benchmark over ``seconds``."""
    meter = CpuMeter(None)
    time.sleep(seconds)
    return meter.stop().get("other", 0.0)


# --- Results --------------------------------------------------------------------------------------------


@dataclass
class Result:
    key: str
    label: str
    server: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    cpu: dict[str, float]
    note: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Target:
    name: str
    wanted: str
    value: float | None
    passed: bool | None
    detail: str

    def shown(self) -> str:
        if self.value is None:
            return "-"
        return f"{self.value:.2f}x" if "x" in self.wanted else f"{self.value:.2f} ms"


@dataclass
class State:
    results: dict[str, Result] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    micro: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    lookups: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


# --- The benchmark ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = State()
        self.cleanups: list[tuple[str, Callable[[], Any]]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="connect-bench-"))  # mktemp -d, outside the repository
        self.cleanups.append(("remove the temporary folder", self._remove_tmp))
        self.seed = secrets.token_hex(16)
        self.django_port = free_port()
        self.ace_port = free_port()
        self.fernet_key = Fernet.generate_key().decode()
        self.secret_key = secrets.token_urlsafe(50)
        self.keyserver: dict[str, Any] = {}
        self.gunicorn: Proc | None = None
        self.code = code_version()  # the commit under test, read again at the end
        self.config_threads = gunicorn_default_threads()
        self.retries_left = 3  # scenarios measured again after a disturbance, at most
        self.quiet_budget = float(args.idle_wait)  # seconds the whole run may wait for a quiet machine
        self.body = webhook_body()
        (self.tmp / "webhook.json").write_bytes(self.body)

    # -- helpers --

    def secret(self, index: int) -> str:
        """Tenant ``index``'s sharedSecret (bench/djtasks.py derives the same one)."""
        return hmac.new(self.seed.encode(), tenant_key(index).encode(), hashlib.sha256).hexdigest()

    def env(self, **extra: str) -> dict[str, str]:
        """The production-like environment of every Django process of the benchmark."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV)}
        env.update(
            CONNECT_READ_DOTENV="0",  # exactly what is set here: no .env from the work tree
            DEBUG="off",
            SECRET_KEY=self.secret_key,
            TENANT_SECRET_KEYS=self.fernet_key,
            CONNECT_BASE_URL=BASE_URL,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
            CACHE_URL=DJANGO_REDIS,
            CONNECT_JWT_MAX_LIFETIME=str(MAX_LIFETIME),
            LOG_LEVEL=self.args.log_level,
            GUNICORN_ACCESS_LOG="off",
            WEB_CONCURRENCY=str(self.args.workers),
            HOST="127.0.0.1",
            PORT=str(self.django_port),
            PYTHONUNBUFFERED="1",
        )
        if self.keyserver:
            env["CONNECT_KEY_SERVERS"] = self.keyserver["url"]
        env.update(extra)
        return env

    def manage(self, *argv: str) -> str:
        return run([PY, "manage.py", *argv], env=self.env())

    def djtask(self, task: str, params: dict[str, Any], **env: str) -> dict[str, Any]:
        return self.djtasks(task, [params], **env)[0]

    def djtasks(self, task: str, many: list[dict[str, Any]], **env: str) -> list[dict[str, Any]]:
        """Run bench/djtasks.py TASK once per params, all at the same time; their JSON answers."""
        procs = []
        for number, params in enumerate(many):
            path = self.tmp / f"{task}-{number}-params.json"
            path.write_text(json.dumps(params))
            path.chmod(0o600)
            argv = [PY, str(BENCH_DIR / "djtasks.py"), task, str(path)]
            procs.append(
                subprocess.Popen(argv, cwd=ROOT, env=self.env(**env), stdout=subprocess.PIPE, text=True)
            )
        answers = []
        try:
            for proc in procs:
                out, _ = proc.communicate(timeout=900)
                if proc.returncode:
                    raise RuntimeError(f"bench/djtasks.py {task} exited {proc.returncode}")
                answers.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return answers

    def sql(self, statement: str, *, dbname: str = DB_NAME) -> Any:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type] - our own constant statements
            return cur.fetchone() if cur.description else None

    def curl(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> int:
        """One request with curl; headers go through a file, so no token shows in the process list."""
        header_file = self.tmp / "curl-headers.txt"
        header_file.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "15", "-X", method]
        argv += ["-H", f"@{header_file}"]
        if body is not None:
            (self.tmp / "curl-body").write_bytes(body)
            argv += ["--data-binary", f"@{self.tmp / 'curl-body'}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=30, check=False)
        header_file.unlink()
        return int(out.stdout.strip() or 0)

    def check(self, what: str, status: int, wanted: set[int], proc: Proc | None = None) -> None:
        ok = status in wanted
        line = f"{'ok' if ok else 'FAILED'}: {what}: HTTP {status}"
        self.state.checks.append(line)
        log(line)
        if not ok:
            tail = f"\n{proc.tail()}" if proc else ""
            raise RuntimeError(f"sanity check failed: {what} answered {status}, not {sorted(wanted)}{tail}")

    # -- request shapes --

    def webhook_token(self, index: int, secret: str | None = None) -> str:
        return sign_tenant(
            secret or self.secret(index),
            client_key=tenant_key(index),
            method="POST",
            url=WEBHOOK_PATH,
            lifetime=TOKEN_LIFETIME,
        )

    def webhook_conf(self, indices: list[int]) -> dict[str, Any]:
        return {
            "method": "POST",
            "path": WEBHOOK_PATH,
            "body": self.body.decode(),
            "content_type": "application/json",
            "tokens": [self.webhook_token(i) for i in indices],
            "unique_ids": True,
        }

    def lifecycle_body(self, event: str) -> str:
        body = {
            "key": APP_KEY,
            "clientKey": tenant_key(0),
            "baseUrl": tenant_base_url(0),
            "displayUrl": tenant_base_url(0),
            "productType": "jira",
            "description": "Atlassian JIRA at https://bench.atlassian.net",
            "serverVersion": "100000",
            "pluginsVersion": "1001.0.0-SNAPSHOT",
            "serviceEntitlementNumber": "SEN-1234",
            "eventType": event,
        }
        if event == "installed":
            body["sharedSecret"] = self.secret(0)  # unchanged: the upsert keeps the tenant's secret
        return json.dumps(body, separators=(",", ":"))

    def enabled_conf(self) -> dict[str, Any]:
        token = sign_tenant(
            self.secret(0),
            client_key=tenant_key(0),
            method="POST",
            url="/lifecycle/enabled",
            lifetime=TOKEN_LIFETIME,
        )
        return {
            "method": "POST",
            "path": "/lifecycle/enabled",
            "body": self.lifecycle_body("enabled"),
            "content_type": "application/json",
            "tokens": [token],
            "unique_ids": False,
        }

    def installed_conf(self) -> dict[str, Any]:
        key = serialization.load_pem_private_key(self.keyserver["private_key_pem"].encode(), password=None)
        token = sign_install(
            key,
            kid=self.keyserver["kid"],
            client_key=tenant_key(0),
            audience=BASE_URL,  # type: ignore[arg-type]
            url="/lifecycle/installed",
            lifetime=TOKEN_LIFETIME,
        )
        return {
            "method": "POST",
            "path": "/lifecycle/installed",
            "body": self.lifecycle_body("installed"),
            "content_type": "application/json",
            "tokens": [token],
            "unique_ids": False,
        }

    @staticmethod
    def get_conf(path: str) -> dict[str, Any]:
        return {
            "method": "GET",
            "path": path,
            "body": None,
            "content_type": None,
            "tokens": [],
            "unique_ids": False,
        }

    # -- wrk --

    def write_lua_conf(self, name: str, conf: dict[str, Any], phase: str) -> Path:
        path = self.tmp / f"{name}-{phase}.lua"
        tokens = ",\n".join(f"    {lua_string(t)}" for t in conf["tokens"])
        body = lua_string(conf["body"]) if conf["body"] is not None else "nil"
        content_type = lua_string(conf["content_type"]) if conf["content_type"] else "nil"
        path.write_text(
            "return {\n"
            f"  method = {lua_string(conf['method'])},\n"
            f"  path = {lua_string(conf['path'])},\n"
            f"  body = {body},\n"
            f"  content_type = {content_type},\n"
            f"  unique_ids = {'true' if conf['unique_ids'] else 'false'},\n"
            f"  id_prefix = {lua_string(f'{self.seed[:8]}-{name}-{phase}')},\n"
            f"  tokens = {{\n{tokens}\n  }},\n"
            "}\n"
        )
        path.chmod(0o600)
        return path

    def wrk_argv(self, url: str, conf: Path, seconds: float, connections: int, latency: bool) -> list[str]:
        threads = max(1, min(self.args.threads, connections))
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "5s"]
        argv += ["-s", str(BENCH_DIR / "wrk.lua")] + (["--latency"] if latency else [])
        return [*argv, url]

    def wrk(
        self,
        key: str,
        label: str,
        server: tuple[str, int],
        base: str,
        conf: dict[str, Any],
        *,
        connections: int | None = None,
        note: str = "",
    ) -> Result:
        """Warm up, then measure one scenario; ``server`` is (name, root pid) for the CPU split.

        The machine may be shared (another user's test suite): each scenario first waits for it to be
        quiet, and one that other processes disturbed anyway is measured again (3 times per run at most,
        within --idle-wait), keeping the less disturbed of the two.
        """
        result = self._measure(key, label, server, base, conf, connections, note)
        if result.cpu.get("other", 0) >= NOISY_CPU and self.retries_left > 0 and self.wait_until_quiet():
            self.retries_left -= 1
            busy = result.cpu["other"]
            log(f"{label}: disturbed by other processes ({busy:.0f}% of a core); measuring again")
            again = self._measure(key, label, server, base, conf, connections, note)
            if again.cpu.get("other", 0) <= busy:  # keep the less disturbed of the two
                result = again
            self.state.results[key] = result
        if result.cpu.get("other", 0) >= NOISY_CPU:
            self.state.notes.append(
                f"{label} ({server[0]}): processes outside the benchmark used {result.cpu['other']:.0f}% "
                "of a core during the measurement: the machine was shared, the numbers are low."
            )
        if result.non_2xx or result.errors:
            self.state.notes.append(
                f"{label} ({server[0]}): {result.non_2xx} non-2xx responses and {result.errors} socket "
                "errors: not a valid measurement."
            )
        return result

    def _measure(
        self,
        key: str,
        label: str,
        server: tuple[str, int],
        base: str,
        conf: dict[str, Any],
        connections: int | None,
        note: str,
        seconds: float | None = None,
        warmup: float | None = None,
    ) -> Result:
        self.wait_until_quiet()
        connections = connections or self.args.connections
        seconds = seconds or self.args.duration
        warmup = self.args.warmup if warmup is None else warmup
        url = base + conf["path"]
        timeout = seconds + warmup + 60
        if warmup > 0:
            env = {**os.environ, "BENCH_CONF": str(self.write_lua_conf(key, conf, "warm"))}
            argv = self.wrk_argv(url, Path(env["BENCH_CONF"]), warmup, connections, False)
            subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=True)
        env = {**os.environ, "BENCH_CONF": str(self.write_lua_conf(key, conf, "run"))}
        argv = self.wrk_argv(url, Path(env["BENCH_CONF"]), seconds, connections, True)
        meter = CpuMeter(server[1])
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=True)
        cpu = meter.stop()
        match = re.search(r"^BENCH_JSON (\{.*\})$", out.stdout, re.M)
        if not match:
            raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{out.stdout}\n{out.stderr}")
        data = json.loads(match.group(1))
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
        errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
        result = Result(
            key=key,
            label=label,
            server=server[0],
            connections=connections,
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            errors=errors,
            non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
            cpu=cpu,
            note=note,
        )
        self.state.results[key] = result
        log(
            f"{label} [{server[0]}, c={connections}]: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, non-2xx {result.non_2xx}, errors {errors}; CPU % {cpu_text(cpu)}"
        )
        return result

    # -- phases --

    def setup(self) -> None:
        started = time.monotonic()
        if not shutil.which("wrk"):
            log("wrk is missing: apt-get install -y wrk")
            apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            if subprocess.run(
                ["apt-get", "install", "-y", "-qq", "wrk"], env=apt_env, check=False
            ).returncode:
                subprocess.run(["apt-get", "update", "-qq"], env=apt_env, check=True)
                subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=apt_env, check=True)
        for tool in ("wrk", "curl") + (() if self.args.skip_ace else ("node", "npm")):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is required and was not found on PATH")
        if not self.wait_until_quiet():
            log("the machine stays busy: measuring anyway (see the notes in the report)")

        log(f"database {DB_NAME}: drop if present, create; Redis db 5 and 6: flush")
        self.sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", dbname="postgres")
        self.sql(f"CREATE DATABASE {DB_NAME}", dbname="postgres")
        if not self.args.keep_db:
            drop = f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"
            self.cleanups.append(("drop the database", lambda: self.sql(drop, dbname="postgres")))
        for url in (DJANGO_REDIS, ACE_REDIS):
            redis.Redis.from_url(url).flushdb()
            self.cleanups.append((f"flush {url}", lambda url=url: redis.Redis.from_url(url).flushdb()))

        log("install-key server (connect_testkit.KeyServer) on loopback")
        info = self.tmp / "keyserver.json"
        keyserver = Proc(
            "key server",
            [PY, str(BENCH_DIR / "keyserver.py"), str(info)],
            env=self.env(),
            log_path=self.tmp / "keyserver.log",
            keep_stdin=True,
        )
        self.cleanups.append(("stop the key server", keyserver.stop))
        wait_for(info.exists, 30, "the key server", keyserver)
        self.keyserver = json.loads(info.read_text())

        t = time.monotonic()
        self.manage("migrate", "--noinput")
        self.state.timings["migrate a fresh database"] = time.monotonic() - t
        log(f"connect_keys fetch: {self.manage('connect_keys', 'fetch', self.keyserver['kid']).strip()}")
        seeded = self.djtask("seed", {"start": 0, "count": 10, "seed": self.seed, "app_key": APP_KEY})
        log(f"seeded {seeded['created']} tenants in {seeded['seconds']:.2f} s")
        if not self.args.skip_ace:
            self.install_ace()
        self.state.timings["setup in all"] = time.monotonic() - started

    def wait_until_quiet(self) -> bool:
        """Wait while other processes keep the machine busy; False once --idle-wait is used up."""
        while True:
            busy = busy_elsewhere(1.0)
            if busy < NOISY_CPU:
                return True
            if self.quiet_budget <= 0:
                return False
            log(f"other processes use {busy:.0f}% of a core; waiting ({self.quiet_budget:.0f} s left)")
            self.quiet_budget -= 1.0

    def install_ace(self) -> None:
        ace_dir = self.tmp / "ace"
        ace_dir.mkdir()
        (ace_dir / "package.json").write_text(json.dumps({"name": "ace-bench", "private": True}))
        log("npm install atlassian-connect-express@latest express@4 (into the temporary folder)")
        t = time.monotonic()
        run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--omit=optional",
                "atlassian-connect-express@latest",
                "express@4",
            ],
            cwd=ace_dir,
        )
        self.state.timings["npm install atlassian-connect-express"] = time.monotonic() - t
        for package in ("atlassian-connect-express", "express", "redis", "atlassian-jwt"):
            meta = json.loads((ace_dir / "node_modules" / package / "package.json").read_text())
            self.state.versions[package] = meta["version"]
        shutil.copy(BENCH_DIR / "ace" / "app.js", ace_dir / "app.js")
        config = {
            "production": {
                "port": self.ace_port,
                "localBaseUrl": BASE_URL,
                "whitelist": "*.atlassian.net",
                "store": {"adapter": "redis-v4", "url": ACE_REDIS},
            }
        }
        (ace_dir / "config.json").write_text(json.dumps(config, indent=2))
        descriptor = {
            "key": APP_KEY,
            "name": "ACE bench",
            "baseUrl": "{{localBaseUrl}}",
            "authentication": {"type": "jwt"},
            "apiMigrations": {"signed-install": True, "context-qsh": True},
            "scopes": ["READ"],
            "lifecycle": {"installed": "/installed"},
        }
        (ace_dir / "atlassian-connect.json").write_text(json.dumps(descriptor, indent=2))

    def ace_phase(self) -> None:
        # Tenant 0 goes straight into ACE's store, as its /installed handler would have saved it.
        info = {
            "key": APP_KEY,
            "clientKey": tenant_key(0),
            "sharedSecret": self.secret(0),
            "baseUrl": tenant_base_url(0),
            "productType": "jira",
            "eventType": "installed",
        }
        redis.Redis.from_url(ACE_REDIS).set(f"{tenant_key(0)}:clientInfo", json.dumps(info))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_", "DB_URL", "NODE_", "PORT"))}
        env.update(NODE_ENV="production", PORT=str(self.ace_port), BENCH_NODE_WORKERS=str(self.args.workers))
        ace = Proc(
            "atlassian-connect-express",
            ["node", "app.js"],
            cwd=self.tmp / "ace",
            env=env,
            log_path=self.tmp / "ace.log",
        )
        try:
            base = f"http://127.0.0.1:{self.ace_port}"
            wait_for(lambda: self.curl("GET", base + "/atlassian-connect.json", {}) == 200, 30, "ACE", ace)
            headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "curl-ace-1"}
            good = {**headers, "Authorization": f"JWT {self.webhook_token(0)}"}
            bad = {**headers, "Authorization": f"JWT {self.webhook_token(0, 'x' * 64)}"}
            status = self.curl("POST", base + WEBHOOK_PATH, good, self.body)
            self.check("ACE webhook, valid token (curl)", status, {200, 204}, ace)
            status = self.curl("POST", base + WEBHOOK_PATH, bad, self.body)
            self.check("ACE webhook, token signed with another secret (curl)", status, {400, 401}, ace)
            self.wrk("ace_webhook", "verified webhook", ("ACE", ace.pid), base, self.webhook_conf([0]))
        finally:
            ace.stop()

    def start_gunicorn(self, **env: str) -> Proc:
        argv = [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "connectsite.wsgi"]
        proc = Proc("gunicorn", argv, env=self.env(**env), log_path=self.tmp / "gunicorn.log")
        self.gunicorn = proc
        base = f"http://127.0.0.1:{self.django_port}"
        wait_for(lambda: self.curl("GET", base + "/healthz", {}) == 200, 60, "gunicorn", proc)
        return proc

    def stop_gunicorn(self) -> None:
        if self.gunicorn is not None:
            self.gunicorn.stop()
            self.gunicorn = None

    def noop_phase(self) -> None:
        """The trivial-view ceiling: the same stack with one 204 view, on a gunicorn of its own."""
        self.cleanups.append(("stop gunicorn", self.stop_gunicorn))
        proc = self.start_gunicorn(DJANGO_SETTINGS_MODULE="bench.noop_settings")
        base = f"http://127.0.0.1:{self.django_port}"
        try:
            self.check(
                "Django GET /bench/noop (curl)", self.curl("GET", base + "/bench/noop", {}), {204}, proc
            )
            self.wrk(
                "ceiling_noop",
                "ceiling: GET /bench/noop (204, no work)",
                ("Django", proc.pid),
                base,
                self.get_conf("/bench/noop"),
                note="bench-only URLconf, same settings and middleware",
            )
        finally:
            self.stop_gunicorn()

    def django_phase(self) -> None:
        base = f"http://127.0.0.1:{self.django_port}"
        proc = self.start_gunicorn()
        server = ("Django", proc.pid)
        log(f"gunicorn master {proc.pid}")
        hook = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "curl-django-1"}
        good = {**hook, "Authorization": f"JWT {self.webhook_token(0)}"}
        bad = {**hook, "Authorization": f"JWT {self.webhook_token(0, 'x' * 64)}"}
        status = self.curl("POST", base + WEBHOOK_PATH, good, self.body)
        self.check("Django webhook, valid token (curl)", status, {204}, proc)
        status = self.curl("POST", base + WEBHOOK_PATH, bad, self.body)
        self.check("Django webhook, token signed with another secret (curl)", status, {401}, proc)
        for name, conf in (("enabled", self.enabled_conf()), ("installed", self.installed_conf())):
            headers = {"Content-Type": "application/json", "Authorization": f"JWT {conf['tokens'][0]}"}
            status = self.curl("POST", base + conf["path"], headers, conf["body"].encode())
            self.check(f"Django {name} (curl)", status, {204}, proc)

        self.wrk(
            "ceiling_healthz", "ceiling: GET /healthz (SELECT 1)", server, base, self.get_conf("/healthz")
        )
        self.wrk(
            "ceiling_descriptor",
            "ceiling: GET /atlassian-connect.json (reads a file)",
            server,
            base,
            self.get_conf("/atlassian-connect.json"),
        )
        self.reset_deliveries()
        self.wrk("webhook", "verified webhook", server, base, self.webhook_conf([0]))
        self.count_deliveries("webhook")
        self.wrk("enabled", "lifecycle enabled (HS256)", server, base, self.enabled_conf())
        self.wrk(
            "installed_c1",
            "signed installed, cached key (RS256)",
            server,
            base,
            self.installed_conf(),
            connections=1,
            note="1 connection: the latency target",
        )
        self.wrk("installed", "signed installed, cached key (RS256)", server, base, self.installed_conf())
        log("micro-benchmark of the verification functions (gunicorn idle)")
        self.state.micro = self.djtask(
            "micro",
            {
                "token": self.webhook_token(0),
                "secret": self.secret(0),
                "client_key": tenant_key(0),
                "path": WEBHOOK_PATH,
                "body_file": str(self.tmp / "webhook.json"),
                "installed_body": self.lifecycle_body("installed"),
            },
        )
        self.stop_gunicorn()

    def tenants_phase(self) -> None:
        """The webhook with 10 tenants against the same with --tenants tenants, A B A B.

        connect_bench keeps its 10 tenants; connect_bench_large is a copy of it (CREATE DATABASE
        ... TEMPLATE) that gets the other tenants through bulk_create.
        """
        large = self.args.tenants
        self.state.lookups["10"] = self.djtask("lookup", {"client_keys": [tenant_key(i) for i in range(10)]})
        self.sql(f"DROP DATABASE IF EXISTS {LARGE_DB} WITH (FORCE)", dbname="postgres")
        self.sql(f"CREATE DATABASE {LARGE_DB} TEMPLATE {DB_NAME}", dbname="postgres")
        if not self.args.keep_db:
            drop = f"DROP DATABASE IF EXISTS {LARGE_DB} WITH (FORCE)"
            self.cleanups.append(("drop the large database", lambda: self.sql(drop, dbname="postgres")))
        large_env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{LARGE_DB}"}
        parts = os.cpu_count() or 1
        log(f"{LARGE_DB}: bulk-creating {large - 10:,} more tenants ({large:,} in all), {parts} processes")
        t = time.monotonic()
        bounds = [10 + (large - 10) * i // parts for i in range(parts + 1)]
        chunks = [
            {"start": lo, "count": hi - lo, "seed": self.seed, "app_key": APP_KEY}
            for lo, hi in itertools.pairwise(bounds)
        ]
        seeded = self.djtasks("seed", chunks, **large_env)
        elapsed = time.monotonic() - t
        count = self.sql("SELECT count(*) FROM tenants_installation", dbname=LARGE_DB)[0]
        created = sum(part["created"] for part in seeded)
        slowest = max(part["seconds"] for part in seeded)
        self.state.timings[f"bulk_create of {created:,} tenants ({parts} processes), slowest"] = slowest
        self.state.timings["the same, wall clock with the processes' start"] = elapsed
        log(f"{count:,} tenants; bulk_create of {created:,} took {elapsed:.1f} s")
        sample = sorted(random.Random(self.seed).sample(range(large), min(SAMPLED_TENANTS, large)))
        keys = [tenant_key(i) for i in sample]
        self.state.lookups["large"] = self.djtask("lookup", {"client_keys": keys}, **large_env)
        small_conf, large_conf = self.webhook_conf(list(range(10))), self.webhook_conf(sample)
        self.interleave(
            [
                ("webhook_10", "verified webhook, 10 tenants", {}, small_conf,
                 "round-robin over the 10 tenants"),
                ("webhook_100k", f"verified webhook, {count:,} tenants", large_env, large_conf,
                 f"round-robin over {len(sample):,} random tenants"),
            ]
        )  # fmt: skip

    def interleave(self, variants: list[tuple[str, str, dict[str, str], dict[str, Any], str]]) -> None:
        """Measure variants (key, label, server environment, request shape, note) A B A B.

        Two rounds of half-length runs, each on a fresh gunicorn. One 10 s run here can differ by
        10-20 % from the next (WAL flushes on a virtual disk, checkpoints, neighbours); alternating
        keeps that drift out of the comparison.
        """
        rounds, seconds = 2, max(self.args.duration / 2, 1)
        base = f"http://127.0.0.1:{self.django_port}"
        runs: dict[str, list[Result]] = {key: [] for key, *_ in variants}
        for _round in range(rounds):
            for key, label, env, conf, _note in variants:
                proc = self.start_gunicorn(**env)
                try:
                    self.reset_deliveries(env.get("DATABASE_URL", DB_NAME).rsplit("/", 1)[-1])
                    result = self._measure(
                        "ab", label, ("Django", proc.pid), base, conf, None, "", seconds, 1
                    )
                    log(f"{label}: {result.rps:,.0f} req/s")
                    runs[key].append(result)
                finally:
                    self.stop_gunicorn()
        self.state.results.pop("ab", None)
        for key, label, _env, _conf, note in variants:
            results = runs[key]
            each = ", ".join(f"{r.rps:,.0f}" for r in results)
            self.state.results[key] = Result(
                key=key,
                label=label,
                server="Django",
                connections=results[0].connections,
                requests=sum(r.requests for r in results),
                seconds=sum(r.seconds for r in results),
                p50_ms=sum(r.p50_ms for r in results) / len(results),
                p99_ms=max(r.p99_ms for r in results),
                errors=sum(r.errors for r in results),
                non_2xx=sum(r.non_2xx for r in results),
                cpu={k: sum(r.cpu.get(k, 0) for r in results) / len(results) for k in results[0].cpu},
                note=f"{note}; {rounds} interleaved {seconds:g} s runs: {each} req/s",
            )

    def reset_deliveries(self, dbname: str = DB_NAME) -> None:
        """Same start for every webhook run: no deliveries, no dead rows, no pending checkpoint."""
        self.sql("TRUNCATE tenants_webhookdelivery", dbname=dbname)
        self.sql("VACUUM ANALYZE tenants_installation", dbname=dbname)
        self.sql("CHECKPOINT", dbname=dbname)

    def count_deliveries(self, key: str) -> None:
        rows = self.sql("SELECT count(*) FROM tenants_webhookdelivery")[0]
        result = self.state.results[key]
        line = (
            f"{result.label}: {rows:,} WebhookDelivery rows for {result.requests:,} measured requests "
            "(plus the warm-up's)"
        )
        self.state.checks.append(line)
        log(line)

    # -- targets --

    def evaluate(self) -> None:
        r, targets = self.state.results, self.state.targets

        def ratio(name: str, num: str, den: str, wanted: float, detail: str = "") -> None:
            if num in r and den in r and r[den].rps:
                value = r[num].rps / r[den].rps
                how = f"{r[num].rps:,.0f} / {r[den].rps:,.0f} req/s" + (f"; {detail}" if detail else "")
                targets.append(Target(name, f">= {wanted:.1f}x", value, value >= wanted, how))
            else:
                targets.append(Target(name, f">= {wanted:.1f}x", None, None, "not measured"))

        others = ", ".join(
            f"{r['webhook'].rps / r[k].rps:.2f}x of {r[k].label.split(' (')[0].removeprefix('ceiling: ')}"
            for k in ("ceiling_healthz", "ceiling_descriptor")
            if k in r and "webhook" in r
        )
        ratio(
            "verified webhook vs trivial view",
            "webhook",
            "ceiling_noop",
            0.8,
            f"ceiling = GET /bench/noop; {others}",
        )
        ratio("verified webhook vs atlassian-connect-express", "webhook", "ace_webhook", 1.0)
        small, large = self.state.lookups.get("10"), self.state.lookups.get("large")
        lookups = (
            f"tenant lookup alone: {small['best_us']:.0f} µs with {small['tenants']:,} tenants, "
            f"{large['best_us']:.0f} µs with {large['tenants']:,}"
            if small and large
            else ""
        )
        ratio(
            f"webhook, {self.args.tenants:,} tenants vs 10 tenants",
            "webhook_100k",
            "webhook_10",
            0.9,
            lookups,
        )
        if "installed_c1" in r:
            one = r["installed_c1"]
            detail = f"1 connection, p99 {one.p99_ms:.2f} ms, {one.rps:,.0f} req/s"
            targets.append(
                Target("signed install, cached key: p50", "< 5 ms", one.p50_ms, one.p50_ms < 5, detail)
            )
        for t in targets:
            verdict = "n/a " if t.passed is None else ("PASS" if t.passed else "MISS")
            log(f"{verdict} {t.name}: {t.shown()} (wanted {t.wanted}) - {t.detail}")

    # -- profiling --

    def profile(self, key: str, label: str, conf: dict[str, Any], connections: int | None = None) -> None:
        """py-spy samples the gunicorn workers (idle included, so database waits count) under load."""
        assert self.gunicorn is not None  # noqa: S101
        spy = VENV_BIN / "py-spy"
        if not spy.exists():
            log("installing py-spy into the virtualenv")
            run([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "py-spy==0.4.3"])
        seconds = self.args.profile_seconds
        base = f"http://127.0.0.1:{self.django_port}"
        raw = self.tmp / f"profile-{key}.txt"
        env = {**os.environ, "BENCH_CONF": str(self.write_lua_conf(f"profile-{key}", conf, "run"))}
        argv = self.wrk_argv(
            base + conf["path"],
            Path(env["BENCH_CONF"]),
            seconds + 4,
            connections or self.args.connections,
            False,
        )
        log(f"py-spy: sampling the gunicorn workers for {seconds} s under load: {label}")
        load = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spy_argv = [str(spy), "record", "--pid", str(self.gunicorn.pid), "--subprocesses", "--idle"]
        spy_argv += ["--nolineno", "--nonblocking", "--rate", "200", "--duration", str(seconds)]
        spy_argv += ["--format", "raw", "--output", str(raw)]
        try:
            time.sleep(2)
            run(spy_argv, timeout=seconds + 60)
            load.wait(seconds + 30)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        summary = summarize_profile(raw.read_text())
        self.state.profiles[label] = summary
        print(summary, flush=True)
        out_dir = BENCH_DIR / "out"
        out_dir.mkdir(exist_ok=True)
        shutil.copy(raw, out_dir / f"profile-{key}.folded")

    # -- the run --

    def run(self) -> None:
        self.setup()
        if not self.args.skip_ace:
            self.ace_phase()
        self.noop_phase()
        self.django_phase()
        self.tenants_phase()
        self.evaluate()
        missed = {t.name for t in self.state.targets if t.passed is False}
        mode = self.args.profile
        profile_webhook = mode == "always" or (mode == "auto" and any("webhook" in n for n in missed))
        profile_install = mode == "always" or (mode == "auto" and any("install" in n for n in missed))
        if profile_webhook or profile_install:
            self.start_gunicorn()
            if profile_webhook:
                self.reset_deliveries()
                conf = self.webhook_conf([0])
                label = f"verified webhook, 1 tenant, {self.args.connections} connections"
                self.profile("webhook", label, conf)
            if profile_install:
                label = "signed installed, cached key, 1 connection"
                self.profile("installed", label, self.installed_conf(), 1)
            self.stop_gunicorn()
        if self.args.whatif_threads:
            self.threads_ab_phase()

    def threads_ab_phase(self) -> None:
        """Not a target: the shipped worker type against the other one (GUNICORN_THREADS), A B A B."""
        default = self.config_threads
        other = 1 if default > 1 else self.args.whatif_threads
        conf = self.webhook_conf([0])
        self.interleave(
            [
                (f"ab_threads_{threads}", f"A/B: verified webhook, {workers_text(threads)}",
                 {"GUNICORN_THREADS": str(threads)}, conf,
                 "the shipped setting; not a target" if threads == default else "not a target")
                for threads in (default, other)
            ]
        )  # fmt: skip

    def close(self) -> None:
        for name, action in reversed(self.cleanups):
            try:
                action()
            except Exception as exc:  # keep cleaning up
                log(f"cleanup '{name}' failed: {type(exc).__name__}: {exc}")
        self.cleanups.clear()

    def _remove_tmp(self) -> None:
        if self.args.keep_tmp:
            log(f"kept the temporary folder {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_text(cpu: dict[str, float]) -> str:
    names = ("server", "postgres", "redis", "wrk", "kernel", "bench", "other", "steal", "idle")
    return " ".join(f"{name} {cpu.get(name, 0):.0f}" for name in names if cpu.get(name, 0) >= 1) or "-"


# --- Profile summary ------------------------------------------------------------------------------------

CATEGORIES = [  # a sample goes to the first category whose pattern its leaf-most matching frame has
    ("psycopg: sending queries, reading rows", re.compile(r"^psycopg|/psycopg")),
    ("Redis client", re.compile(r"^redis/|/redis/")),
    ("logging", re.compile(r"^logging/|/logging/")),
    (
        "Fernet / cryptography (secret decrypt)",
        re.compile(r"^cryptography/|/cryptography/|tenants/crypto\.py"),
    ),
    ("PyJWT (decode, HMAC)", re.compile(r"^jwt/|/jwt/")),
    ("json", re.compile(r"^json/|/json/")),
    ("Django ORM (SQL compile, model init, transactions)", re.compile(r"^django/db/|/django/db/")),
    ("Django request/response, middleware, URL routing", re.compile(r"^django/|/django/")),
    ("app code: lifecycle/", re.compile(r"^lifecycle/")),
    ("app code: tenants/", re.compile(r"^tenants/")),
    ("gunicorn (HTTP parsing, socket I/O)", re.compile(r"^gunicorn/|/gunicorn/")),
]
LIBRARY_HOT_SPOTS = {  # library functions worth naming in a summary, by their py-spy name
    "QuerySet.first",
    "QuerySet.get",
    "Model.save",
    "Atomic.__exit__",
    "Atomic.__enter__",
    "SQLCompiler.as_sql",
    "BaseDatabaseWrapper.close_if_health_check_failed",
    "Connection.wait",
    "Logger.info",
    "Logger._log",
    "MultiFernet.decrypt",
    "PyJWT.decode",
    "HttpRequest.body",
    "JsonResponse.__init__",
    "WSGIHandler.__call__",
    "SQLInsertCompiler.execute_sql",
    "SQLCompiler.execute_sql",
    "CursorWrapper.execute",
    "DatabaseCache.add",
    "RedisCache.add",
    "RedisCache.get",
    "SessionMiddleware.process_response",
    "CsrfViewMiddleware.process_view",
}


def _frame(frame: str) -> tuple[str, str]:
    match = re.match(r"^(.*) \((.*)\)$", frame)
    return (match.group(1), match.group(2)) if match else (frame, "")


def summarize_profile(text: str) -> str:
    """py-spy raw (folded) stacks -> where the workers' request time goes, by category and function."""
    worker_samples: list[tuple[list[str], int]] = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if count.isdigit() and any("init_process" in f for f in frames):  # gunicorn workers, not the master
            worker_samples.append((frames, int(count)))
    workers = sum(n for _, n in worker_samples)
    in_request = [(frames, n) for frames, n in worker_samples if any("handle_request" in f for f in frames)]
    busy = sum(n for _, n in in_request)
    if not busy:
        return "py-spy recorded no sample inside a request"
    categories: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, n in in_request:
        for frame in reversed(frames):
            func, path = _frame(frame)
            if func == "Connection.wait" and path.startswith("psycopg"):
                category: str | None = "waiting for PostgreSQL (psycopg Connection.wait)"
            else:
                category = next((name for name, rx in CATEGORIES if rx.search(path)), None)
            if category:
                categories[category] += n
                break
        else:
            categories["other (stdlib, C code)"] += n
        for frame in set(frames):
            inclusive[frame] += n

    def line(n: int, name: str) -> str:
        return f"  {n / busy:6.1%}  {name}"

    app = [(f, n) for f, n in inclusive.items() if _frame(f)[1].startswith(("lifecycle/", "tenants/"))]
    lib = [(f, n) for f, n in inclusive.items() if _frame(f)[0] in LIBRARY_HOT_SPOTS]
    out = [
        f"worker samples: {workers:,} at 200 Hz (idle included); inside a request: {busy:,} "
        f"({busy / workers:.0%} of the workers' time). Shares below are of the time inside requests.",
        "",
        "By category (a sample counts for the innermost frame that has a category):",
        *(line(n, name) for name, n in categories.most_common()),
        "",
        "Inclusive, app code (lifecycle/, tenants/):",
        *(line(n, f) for f, n in sorted(app, key=lambda x: -x[1])[:16]),
        "",
        "Inclusive, selected framework and library functions:",
        *(line(n, f) for f, n in sorted(lib, key=lambda x: -x[1])[:16]),
    ]
    return "\n".join(out)


# --- Report ---------------------------------------------------------------------------------------------


def versions(state: State) -> dict[str, str]:
    import cryptography
    import django
    import gunicorn
    import jwt

    def cmd(*argv: str) -> str:
        with contextlib.suppress(Exception):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        return "?"

    found = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "PyJWT": jwt.__version__,
        "cryptography": cryptography.__version__,
        "psycopg": psycopg.__version__,
        "redis-py": redis.__version__,  # type: ignore[attr-defined]
        "PostgreSQL": "?",
        "Redis": str(redis.Redis.from_url(DJANGO_REDIS).info("server").get("redis_version", "?")),
        "node": cmd("node", "--version"),
        "wrk": cmd("wrk", "-v").split(" [")[0].removeprefix("wrk "),
    }
    with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN_URL) as conn:
        found["PostgreSQL"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    names = {
        "atlassian-connect-express": "atlassian-connect-express",
        "express": "express",
        "redis": "node-redis",
        "atlassian-jwt": "atlassian-jwt",
    }
    found.update({names[k]: v for k, v in state.versions.items() if k in names})
    return found


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "?",
        )
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024 / 1024:.0f} GiB"
    return {"nproc": str(os.cpu_count()), "CPU": cpu, "memory": memory, "OS": platform.platform()}


def gunicorn_default_threads() -> int:
    """GUNICORN_THREADS' default in gunicorn.conf.py: 1 means sync workers, more means gthread."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GUNICORN_")}
    try:
        return int(runpy.run_path(str(ROOT / "gunicorn.conf.py")).get("threads", 1))
    except Exception:
        return 1
    finally:
        os.environ.update(saved)


def workers_text(threads: int) -> str:
    return "sync workers" if threads <= 1 else f"gthread workers x {threads} threads"


def code_version() -> str:
    """The commit under test (read-only git), and whether the work tree had uncommitted changes."""
    with contextlib.suppress(Exception):
        head = run(["git", "rev-parse", "--short", "HEAD"]).strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench"])
        return head + (" with uncommitted changes" if dirty.strip() else "")
    return "unknown (no git)"


ORDER = [
    "ceiling_noop",
    "ceiling_healthz",
    "ceiling_descriptor",
    "webhook",
    "ace_webhook",
    "enabled",
    "installed_c1",
    "installed",
    "webhook_10",
    "webhook_100k",
]


def table(results: dict[str, Result]) -> str:
    rows = [
        "| scenario | server | conns | req/s | p50 ms | p99 ms | non-2xx / errors | CPU, % of a core "
        "| note |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for key in [*ORDER, *(k for k in results if k not in ORDER)]:
        if key in results:
            r = results[key]
            rows.append(
                f"| {r.label} | {r.server} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
                f"{r.p99_ms:.2f} | "
                f"{r.non_2xx} / {r.errors} | {cpu_text(r.cpu)} | {r.note} |"
            )
    return "\n".join(rows)


def targets_table(targets: list[Target]) -> str:
    rows = ["| target | wanted | measured | verdict | how |", "|---|---|---:|---|---|"]
    for t in targets:
        verdict = "n/a" if t.passed is None else ("**PASS**" if t.passed else "**MISS**")
        rows.append(f"| {t.name} | {t.wanted} | {t.shown()} | {verdict} | {t.detail} |")
    return "\n".join(rows)


def micro_table(micro: dict[str, Any]) -> str:
    if not micro:
        return "(not run)"
    base = micro["jwt_decode_bare"]["best_us"]
    rows = ["| what | µs per call, best of 5 | median of 5 | x bare jwt.decode |", "|---|---:|---:|---:|"]
    rows += [
        f"| {d['label']} | {d['best_us']:.1f} | {d['median_us']:.1f} | {d['best_us'] / base:.1f} |"
        for d in micro.values()
    ]
    return "\n".join(rows)


def report(bench: Bench, runtime: float) -> str:
    state, args = bench.state, bench.args
    mach = machine()
    vers = versions(state)
    ace = state.versions.get("atlassian-connect-express", "(not run)")
    w = args.workers
    method = [
        f"wrk, {args.connections} connections, {args.threads} threads, {args.warmup:g} s warm-up, then "
        f"{args.duration:g} s measured per scenario with `--latency` (p50/p99 from wrk's histogram, printed "
        "by `bench/wrk.lua`). Webhook requests carry a unique `X-Atlassian-Webhook-Identifier` each and an "
        "`Authorization: JWT` token precomputed for the URL with `connect_testkit.sign_tenant` (HS256, "
        f"iss/iat/exp/qsh, {TOKEN_LIFETIME} s lifetime, CONNECT_JWT_MAX_LIFETIME={MAX_LIFETIME}); the body "
        "is a 1.5 KB jira:issue_created JSON.",
        f"Django: `gunicorn -c gunicorn.conf.py connectsite.wsgi`, WEB_CONCURRENCY={w}, "
        f"{workers_text(bench.config_threads)} (gunicorn.conf.py's default), DEBUG off, PostgreSQL "
        "database `connect_bench` (created and migrated by the script, dropped afterwards), "
        "CACHE_URL=redis://127.0.0.1:6379/5, a generated Fernet TENANT_SECRET_KEYS, "
        f"CONNECT_BASE_URL={BASE_URL}, GUNICORN_ACCESS_LOG=off (no access log), "
        f"LOG_LEVEL={args.log_level} (the app's own log goes to a file). The install key comes from a "
        "loopback `connect_testkit.KeyServer` in its own process, pre-fetched with "
        "`manage.py connect_keys fetch KID`.",
        f"atlassian-connect-express {ace} from npm in a `mktemp -d` folder: express 4, "
        "`addon.authenticate()` on `POST /webhooks/:event` answering 204, NODE_ENV=production, "
        f"localBaseUrl = the same baseUrl, a node cluster of {w} processes, the tenant written straight into "
        "its Redis store (redis://127.0.0.1:6379/6) through ACE's redis adapter class (see the notes).",
        f"Same core count: {w} gunicorn workers against {w} node processes; nothing is pinned, contenders "
        f"run one after the other. The machine's {mach['nproc']} cores also run wrk, PostgreSQL and Redis, "
        "so absolute numbers are low; the targets are ratios of the same run. The CPU column splits the "
        f"machine's {int(mach['nproc']) * 100} % during each measurement: server = the gunicorn or node "
        "processes, postgres = the backends of connect_bench and PostgreSQL's own processes, kernel = kernel "
        "threads, other = everything outside the benchmark (another user's tests, say), steal = taken by "
        "the hypervisor, idle = unused (waiting for the disk included).",
        "Trivial view: `GET /bench/noop`, a view answering 204 behind the same settings and middleware, on a "
        "separate gunicorn with `DJANGO_SETTINGS_MODULE=bench.noop_settings` (the project's settings with "
        "`ROOT_URLCONF=bench.noop_urls`: the project's URLs plus that view). `/healthz` (a `SELECT 1` plus "
        "the connection health check) and `/atlassian-connect.json` (reads, parses and re-renders the "
        "descriptor file) are reported too; neither is a trivial view.",
        "Webhook deliveries are truncated (and the tenants table vacuumed, then a checkpoint) before each "
        f"webhook run. Tenant count: `{LARGE_DB}` is a copy of the 10-tenant database that gets "
        f"{args.tenants:,} tenants; gunicorn serves one database, then the other, A B A B in runs of half "
        f"the duration, so drift does not land on one side. The large run sends round-robin over the "
        f"tokens of {SAMPLED_TENANTS:,} random tenants, the small one over all 10.",
        "Signed `installed` reuses one RS256 token and body: the replay guard lets the same token with the "
        "same body through as an idempotent retry, and `tenants.services.install` and the audit row run "
        f"every time. Its p50 target is read at 1 connection: at {args.connections} connections on {w} "
        "workers, p50 is mostly queueing.",
    ]
    notes = [
        *state.notes,
        "Run to run, a 10 s throughput figure on this machine moves by 10-20 % (WAL flushes on a virtual "
        "disk, checkpoints, neighbours); read ratios near a threshold with that in mind. The A/B rows "
        "alternate short runs of both worker settings to keep that drift out of their comparison.",
    ]
    if bench.config_threads <= 1:
        notes.append(
            "gunicorn's sync workers close the connection after every response (no keep-alive), so each "
            "Django request includes a TCP accept and close; node keeps connections alive."
        )
    if "atlassian-connect-express" in state.versions:
        notes += [
            f"ACE {ace}'s own `redis` store adapter fails with node-redis {state.versions.get('redis', '4')} "
            "(`ClientClosedError: The client is closed`: it never calls `connect()` and promisifies a "
            "promise API); bench/ace/app.js subclasses it and only wires the client the node-redis 4 way "
            "(same keys, same JSON).",
            "ACE's webhook path does a Redis GET, an HS256 verification and the qsh check, and signs a "
            "session token; it records nothing. The Django path also looks the tenant up in PostgreSQL, "
            "decrypts its secret and inserts the deduplicated WebhookDelivery row: a commit, so a WAL flush, "
            "per request.",
        ]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`bash bench/run.sh`) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"the whole run took {runtime:.0f} s.",
        "",
        "## Machine and versions",
        "",
        f"- code under test: {bench.code}"
        + ("" if code_version() == bench.code else f" (it changed during the run, to {code_version()})"),
        *(f"- {k}: {v}" for k, v in mach.items()),
        "- " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "",
        "## Method",
        "",
        *(f"- {m}" for m in method),
        "",
        "## Results",
        "",
        table(state.results),
        "",
        "## Targets",
        "",
        targets_table(state.targets),
        "",
        "## Verification alone (micro-benchmark, no HTTP, same database)",
        "",
        micro_table(state.micro),
        "",
        "## Setup timings",
        "",
        *(f"- {k}: {v:.1f} s" for k, v in state.timings.items()),
        "",
        "## Checks",
        "",
        *(f"- {c}" for c in state.checks),
    ]
    for label, summary in state.profiles.items():
        lines += ["", f"## Profile: {label}", ""]
        lines += ["py-spy on both gunicorn workers; folded stacks in `bench/out/` (not committed).", ""]
        lines += ["```", summary, "```"]
    lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines).rstrip() + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="measured seconds per scenario (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each scenario (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers and node processes (2)")
    parser.add_argument("--tenants", type=int, default=100_000, help="tenants of the large run (100000)")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the server under test (INFO)")
    parser.add_argument(
        "--idle-wait", type=float, default=60, help="seconds, in all, to wait for a quiet machine (60)"
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy the workers when a target is missed (auto), always, or never",
    )
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument(
        "--whatif-threads",
        type=int,
        default=4,
        help="A/B the webhook against the other worker type: threads to try when the shipped "
        "setting is sync (4); 0: skip",
    )
    parser.add_argument("--skip-ace", action="store_true", help="leave out atlassian-connect-express")
    parser.add_argument("--keep-db", action="store_true", help="keep the connect_bench database afterwards")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (logs) afterwards")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md", help="report file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # Two runs at once would drop each other's database and flush each other's Redis dbs.
    lock = open(LOCK_PATH, "a")  # held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another benchmark is running (it holds {LOCK_PATH}); try again when it has finished")
        return 1
    started = time.monotonic()

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    bench = Bench(args)
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        bench.close()
    runtime = time.monotonic() - started
    args.results.write_text(report(bench, runtime))
    print(f"\n{table(bench.state.results)}\n\n{targets_table(bench.state.targets)}\n")
    print(f"{micro_table(bench.state.micro)}\n")
    log(f"done in {runtime:.0f} s; wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
