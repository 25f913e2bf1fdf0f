"""`make bench`: this project's verified webhook against atlassian-connect-express, in one run.

    bash bench/run.sh [--duration 8] [--memory-requests 100000] [--skip-ace]

Contenders share the machine's cores one after the other: gunicorn with 2 sync workers against a
node cluster of 2 processes. wrk (bench/wrk.lua, 32 connections) loads each scenario after a 2 s
warm-up; psutil adds up the CPU each process group used; pyperf times verification alone
(bench/micro.py). Prints the table and the targets; a run with the default options rewrites the
Results of bench/RESULTS.md.

PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379, databases 5 and 6) must be
up; wrk, node and npm must be installed (bench/run.sh installs wrk). Loopback only.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import json
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyperf
import redis
import requests
from cryptography.fernet import Fernet

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from connect_testkit import KeyServer, generate_rsa_key, sign_install, sign_tenant  # noqa: E402

PY = sys.executable
BASE_URL, APP_KEY = "https://bench.example.test", "django-connect-app"
HOOK = "/webhooks/jira:issue_created"
BODY = (BENCH / "webhook.json").read_text()
PG = "postgres://postgres@127.0.0.1:5432/"
DJANGO_REDIS, ACE_REDIS = "redis://127.0.0.1:6379/5", "redis://127.0.0.1:6379/6"
LIFECYCLE = ("enabled", "disabled")
LIFETIME = 3000  # token lifetime (s): one run's tokens stay valid throughout
NOOP = {"method": "GET", "path": "/bench/noop"}
SEED_TENANTS = """
import hashlib, hmac
from tenants import services
from tenants.models import Installation
seed, n, key = {seed!r}, {n}, {key!r}
def body(i):
    secret = hmac.new(seed.encode(), f"bench-{{i}}".encode(), hashlib.sha256).hexdigest()
    return {{"key": key, "clientKey": f"bench-{{i}}", "sharedSecret": secret, "productType": "jira",
            "baseUrl": f"https://bench-{{i:06d}}.atlassian.net", "eventType": "installed"}}
for i in range(min(n, 10)):
    services.install(body(i)); services.enable(f"bench-{{i}}")
rows = (Installation(client_key=f"bench-{{i}}", shared_secret=body(i)["sharedSecret"], enabled=True,
    base_url=body(i)["baseUrl"], product_type="jira") for i in range(10, n))
Installation.objects.bulk_create(rows, batch_size=2000)
print(Installation.objects.count())
"""


@dataclass
class Result:
    label: str
    server: str
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU per request, by process group
    note: str = ""


def sh(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode:
        raise SystemExit(f"bench: {' '.join(argv)[:120]} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def psql(sql: str, db: str = "postgres") -> str:
    return sh("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atqc", sql).strip()


class Server:
    """A server process group on a free loopback port, its log in the run's folder."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], tmp: Path, cwd: Path = ROOT):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.name, self.database = name, env.get("DATABASE_URL", "")
        self.log = (tmp / f"{name}.log").open("w")
        env = {**env, "PORT": str(self.port)}
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise SystemExit(f"bench: {name} did not start; see {self.log.name}")

    def group(self) -> list[psutil.Process]:
        parent = psutil.Process(self.proc.pid)
        return [parent, *parent.children(recursive=True)]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: this process group, PostgreSQL's and Redis's processes."""
        totals = {self.name: sum(sum(p.cpu_times()[:2]) for p in self.group()), "postgres": 0.0, "redis": 0.0}
        for proc in psutil.process_iter(["name"]):
            kind = next((k for k in ("postgres", "redis") if (proc.info["name"] or "").startswith(k)), None)
            try:
                if kind:
                    totals[kind] += sum(proc.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
        return totals

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.seed, self.keys = args, secrets.token_hex(8), KeyServer()
        self.tmp = Path(tempfile.mkdtemp(prefix="connect-bench-"))
        self.results: dict[str, Result] = {}
        self.micro: dict[str, float] = {}
        self.memory: dict[str, float] = {}
        self.facts: list[str] = []
        self.versions: dict[str, str] = {}
        self.env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        self.env.update(
            CONNECT_READ_DOTENV="0",
            DEBUG="off",
            SECRET_KEY=secrets.token_urlsafe(50),
            TENANT_SECRET_KEYS=Fernet.generate_key().decode(),
            CONNECT_BASE_URL=BASE_URL,
            CONNECT_APP_KEY=APP_KEY,
            ALLOWED_HOSTS="127.0.0.1",
            CONNECT_JWT_MAX_LIFETIME=str(LIFETIME + 600),
            LOG_LEVEL="WARNING",
            GUNICORN_ACCESS_LOG="off",
            WEB_CONCURRENCY="2",
            HOST="127.0.0.1",
            DJANGO_SETTINGS_MODULE="bench.noop_settings",  # the project's settings, plus /bench/noop
        )

    def secret(self, i: int) -> str:
        return hmac.new(self.seed.encode(), f"bench-{i}".encode(), hashlib.sha256).hexdigest()

    def lifecycle(self, i: int, event: str) -> dict[str, Any]:
        """Tenant ``i``'s lifecycle body, as Jira sends it."""
        return {
            "key": APP_KEY,
            "clientKey": f"bench-{i}",
            "sharedSecret": self.secret(i),
            "eventType": event,
            "baseUrl": f"https://bench-{i:06d}.atlassian.net",
            "productType": "jira",
        }

    def post(self, event: str, token: str) -> dict[str, Any]:
        body = json.dumps(self.lifecycle(0, event))
        return {
            "path": f"/lifecycle/{event}",
            "body": body,
            "content_type": "application/json",
            "tokens": [token],
        }

    @functools.cache  # noqa: B019 - one Bench per run; 100,000 tokens take seconds to sign
    def hooks(self, tenants: range) -> dict[str, Any]:
        sign = functools.partial(sign_tenant, method="POST", url=HOOK, lifetime=LIFETIME)
        tokens = [sign(self.secret(i), client_key=f"bench-{i}") for i in tenants]
        return {
            "path": HOOK,
            "body": BODY,
            "content_type": "application/json",
            "tokens": tokens,
            "unique_ids": True,
        }

    # -- the contenders --

    def database(self, url: str, tenants: int) -> dict[str, str]:
        """Migrate ``url``; install tenants 0-9 as Jira would, then bulk-create the rest."""
        env = {**self.env, "DATABASE_URL": url}
        if url.startswith("postgres"):
            psql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")
            psql(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
        sh(PY, "manage.py", "migrate", "-v0", env=env)
        code = SEED_TENANTS.format(seed=self.seed, n=tenants, key=APP_KEY)
        count = sh(PY, "manage.py", "shell", "-v0", "--no-startup", "-c", code, env=env).strip()
        self.facts.append(f"{url.split(':')[0]} database: {int(count):,} tenants")
        return env

    def gunicorn(self, env: dict[str, str]) -> Server:
        return Server("gunicorn", [PY, "-m", "gunicorn", "connectsite.wsgi"], env, self.tmp)

    def ace(self, store: dict[str, Any], tenants: int) -> Server:
        """atlassian-connect-express from npm in the run's folder (bench/ace), with ``tenants``."""
        folder = self.tmp / "ace"
        if not (folder / "node_modules").exists():
            shutil.copytree(BENCH / "ace", folder)
            npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
            sh(*npm, f"atlassian-connect-express@{self.args.ace_version}", "express@4", cwd=folder)
            for package in ("atlassian-connect-express", "express"):
                self.versions[package] = json.loads(
                    (folder / "node_modules" / package / "package.json").read_text()
                )["version"]
        config = {"localBaseUrl": BASE_URL, "whitelist": "*.atlassian.net", "store": store}
        (folder / "config.json").write_text(json.dumps({"production": config}))
        infos = [self.lifecycle(i, "installed") for i in range(tenants)]
        if store["adapter"] == "redis-v4":  # written as ACE's /installed would have saved them
            client = redis.Redis.from_url(ACE_REDIS)
            client.flushdb()
            client.mset({f"{info['clientKey']}:clientInfo": json.dumps(info) for info in infos})
            infos = []
        (folder / "tenants.json").write_text(json.dumps(infos))  # app.js loads these into a Map
        env = {k: v for k, v in self.env.items() if k in ("PATH", "HOME", "LANG")}
        env.update(NODE_ENV="production", BENCH_NODE_WORKERS="2")
        return Server(f"ace-{store['adapter']}", ["node", "app.js"], env, self.tmp, cwd=folder)

    # -- measuring --

    def wrk(
        self,
        key: str,
        label: str,
        server: Server,
        request: dict[str, Any],
        conns: int = 32,
        seconds: float | None = None,
        note: str = "",
    ) -> Result:
        """One wrk run of ``request`` against ``server`` after a 2 s warm-up; stored as ``key``."""
        if server.name == "gunicorn" and request["path"].startswith("/webhooks"):
            self.reset(server)  # every webhook run starts from empty delivery and task tables
        shape = {"method": "POST", "body": None, "content_type": None, "unique_ids": False, **request}
        tokens = ",".join(json.dumps(t) for t in shape.pop("tokens", []))
        lua = ", ".join(f"{k}={'nil' if v is None else json.dumps(v)}" for k, v in shape.items())
        conf = self.tmp / f"{key}.lua"
        conf.write_text(f"return {{{lua}, id_prefix={json.dumps(key + self.seed)}, tokens={{{tokens}}}}}")
        env = {**os.environ, "BENCH_CONF": str(conf)}
        command = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", "-s", str(BENCH / "wrk.lua"), "--latency"]
        command.append(f"http://127.0.0.1:{server.port}{shape['path']}")
        subprocess.run([*command, "-d2s"], env=env, capture_output=True, check=True)  # warm-up
        before = server.cpu()
        seconds = max(1, round(seconds or self.args.duration))
        out = subprocess.run([*command, f"-d{seconds}s"], env=env, capture_output=True, text=True, check=True)
        after = server.cpu()
        data = json.loads(out.stdout.split("BENCH_JSON ", 1)[1])
        count = max(1, data["requests"])
        failed = sum(
            data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        )
        cpu = {k: (after[k] - before[k]) / count * 1e6 for k in after}
        rps = count / (data["duration_us"] / 1e6)
        result = Result(
            label,
            server.name.split("-")[0],
            rps,
            data["p50_us"] / 1e3,
            data["p99_us"] / 1e3,
            failed,
            cpu,
            note,
        )
        self.results[key] = result
        print(
            f"  {label:54} {server.name:14} {rps:8,.0f} req/s, p50 {result.p50_ms:.2f} ms, failed {failed}",
            flush=True,
        )
        return result

    def reset(self, server: Server) -> None:
        if server.database.startswith("postgres"):
            psql("TRUNCATE tenants_webhookdelivery, django_tasks_database_dbtaskresult", "connect_bench")
            psql("CHECKPOINT", "connect_bench")
        else:
            with sqlite3.connect(server.database.removeprefix("sqlite:///")) as db:
                db.execute("DELETE FROM tenants_webhookdelivery")
                db.execute("DELETE FROM django_tasks_database_dbtaskresult")

    def interleave(self, server: Server, runs: list[tuple[str, str, range, str]]) -> None:
        """Webhook runs A B A B, half the duration each, summed: one 8 s run here can differ from
        the next by 20 % or more (WAL flushes on a virtual disk, neighbours), and alternating keeps
        that drift out of their ratio."""
        halves: dict[str, list[Result]] = {key: [] for key, *_ in runs}
        for _ in range(2):
            for key, label, tenants, _note in runs:
                halves[key].append(
                    self.wrk(key, label, server, self.hooks(tenants), seconds=self.args.duration / 2)
                )
        for key, label, _tenants, note in runs:
            a, b = halves[key]
            note = "; ".join(filter(None, [note, f"2 interleaved runs: {a.rps:,.0f} and {b.rps:,.0f} req/s"]))
            cpu = {k: (a.cpu_us[k] + b.cpu_us[k]) / 2 for k in a.cpu_us}
            p50, p99 = (a.p50_ms + b.p50_ms) / 2, max(a.p99_ms, b.p99_ms)
            self.results[key] = Result(
                label, a.server, (a.rps + b.rps) / 2, p50, p99, a.failed + b.failed, cpu, note
            )

    def run(self) -> None:
        args, spread = self.args, range(min(self.args.tenants, self.args.spread or self.args.tenants))
        print(f"bench: folder {self.tmp}", flush=True)
        key, kid = generate_rsa_key(), f"bench/{uuid.uuid4()}"  # a kid with '/', as Atlassian's
        self.keys.publish(kid, key)
        self.env["CONNECT_KEY_SERVERS"] = self.keys.url
        pg = {**self.database(f"{PG}connect_bench", args.tenants), "CACHE_URL": DJANGO_REDIS}
        redis.Redis.from_url(DJANGO_REDIS).flushdb()
        sh(PY, "manage.py", "connect_keys", "fetch", kid, env=pg)
        print("PostgreSQL + Redis", flush=True)
        server = self.gunicorn(pg)
        try:
            self.wrk("noop", "trivial view: GET /bench/noop (204)", server, NOOP)
            many = f"verified webhook, {len(spread):,} of {args.tenants:,} tenants"
            note = "round-robin: each tenant once per pass, more than a worker remembers"
            self.interleave(
                server,
                [
                    ("webhook", "verified webhook, 10 tenants", range(10), ""),
                    ("webhook_many", many, spread, note),
                ],
            )
            for event in LIFECYCLE:
                token = sign_tenant(
                    self.secret(0), client_key="bench-0", method="POST", url=f"/lifecycle/{event}"
                )
                self.wrk(event, f"lifecycle {event} (HS256)", server, self.post(event, token))
            token = sign_install(key, kid=kid, client_key="bench-0", audience=BASE_URL, lifetime=LIFETIME)
            note = "1 connection; the same token and body: an idempotent retry"
            self.wrk(
                "installed",
                "signed installed, cached key (RS256)",
                server,
                self.post("installed", token),
                conns=1,
                note=note,
            )
            if args.memory_requests:
                self.memory_run(server, args.memory_requests, spread)
        finally:
            server.stop()
        self.measure_ace("ace_redis", {"adapter": "redis-v4", "url": ACE_REDIS}, "ACE's Redis store")
        print("SQLite, the default (no CACHE_URL)", flush=True)
        server = self.gunicorn(self.database(f"sqlite:///{self.tmp / 'bench.sqlite3'}", 10))
        try:
            self.wrk("sqlite_noop", "trivial view: GET /bench/noop (204)", server, NOOP)
            self.wrk("sqlite_webhook", "verified webhook, 10 tenants", server, self.hooks(range(10)))
        finally:
            server.stop()
        self.measure_ace("ace_memory", {"adapter": "memory-map"}, "ACE's in-memory store (a Map)")
        out = self.tmp / "micro.json"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        sh(PY, str(BENCH / "micro.py"), "--fast", "--quiet", "-o", str(out), env=env)
        self.micro = {
            b.get_name(): b.mean() * 1e6 for b in pyperf.BenchmarkSuite.load(str(out)).get_benchmarks()
        }
        psql("DROP DATABASE IF EXISTS connect_bench")

    def measure_ace(self, key: str, store: dict[str, Any], note: str) -> None:
        if not self.args.skip_ace:
            ace = self.ace(store, 10)
            try:
                self.wrk(key, "verified webhook, 10 tenants", ace, self.hooks(range(10)), note=note)
            finally:
                ace.stop()

    def memory_run(self, server: Server, count: int, spread: range) -> None:
        """RSS of each worker before and after ``count`` webhooks round-robin over ``spread``
        (wrk runs for a time: runs again, for what is left, until ``count`` are done)."""
        workers = [p for p in server.group() if p.pid != server.proc.pid]
        before = {p.pid: p.memory_info().rss for p in workers}
        rate, done = max(self.results["webhook_many"].rps, 50), 0.0
        label = f"verified webhook, all {len(spread):,} tenants"
        print(f"  memory: {count:,} webhooks over {len(spread):,} tenants", flush=True)
        for _ in range(4):
            seconds = (count - done) / rate * 1.1 + 1
            result = self.wrk(
                "memory", label, server, self.hooks(spread), seconds=seconds, note="the memory run"
            )
            done += result.rps * round(seconds)
            rate = max(result.rps, 20)
            if done >= count:
                break
        growth = [(p.memory_info().rss - before[p.pid]) / 2**20 for p in workers if p.is_running()]
        self.memory = {"requests": done, "growth_mb": max(growth), "workers": len(growth)}

    # -- report --

    def targets(self) -> list[tuple[str, str, str, bool, str]]:
        """(target, wanted, measured, met, how) for each target of the performance issue."""
        r, m, nan, many = self.results, self.micro, float("nan"), f"{self.args.spread or self.args.tenants:,}"

        def ratio(a: str, b: str) -> float:
            return r[a].rps / r[b].rps if a in r and b in r else nan

        rows = [
            ("verified webhook vs ACE (Redis store), PostgreSQL + Redis", 1.0, ratio("webhook", "ace_redis")),
            ("verified webhook vs ACE (in-memory store), SQLite", 1.0, ratio("sqlite_webhook", "ace_memory")),
            ("verified webhook vs the trivial view, same server", 0.7, ratio("webhook", "noop")),
            ("enabled/disabled vs the verified webhook", 0.5, min(ratio(e, "webhook") for e in LIFECYCLE)),
            (f"webhook: {many} tenants vs 10", 0.9, ratio("webhook_many", "webhook")),
        ]
        out = [(name, f">= {floor}x", f"{v:.2f}x", v >= floor, "req/s ratio") for name, floor, v in rows]
        p50 = r["installed"].p50_ms if "installed" in r else nan
        out.append(
            ("signed installed, cached key, 1 connection: p50", "< 3 ms", f"{p50:.2f} ms", p50 < 3, "wrk")
        )
        token, floor = m.get("protocol.verify_token", nan), m.get("jwt.decode", nan)
        how = f"{token:.1f} / {floor:.1f} µs (pyperf)"
        out.append(
            (
                "the token verification vs bare jwt.decode",
                "<= 1.5x",
                f"{token / floor:.2f}x",
                token / floor <= 1.5,
                how,
            )
        )
        growth, done = self.memory.get("growth_mb", nan), self.memory.get("requests", 0)
        how = f"RSS, largest of {self.memory.get('workers', 0)} workers"
        out.append(
            (
                f"worker memory after {done:,.0f} webhooks over {many} tenants",
                "grows < 20 MB",
                f"{growth:+.1f} MB",
                growth < 20,
                how,
            )
        )
        return out

    def report(self, seconds: float) -> str:
        import django
        import gunicorn
        import jwt

        lines = [
            "| scenario | server | req/s | p50 ms | p99 ms | failed | CPU µs per request | note |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        for res in self.results.values():
            cpu = ", ".join(f"{k} {v:,.0f}" for k, v in res.cpu_us.items() if v >= 1)
            lines.append(
                f"| {res.label} | {res.server} | {res.rps:,.0f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | "
                f"{res.failed} | {cpu} | {res.note} |"
            )
        targets = self.targets()
        passed, skipped = sum(t[3] for t in targets), sum("nan" in t[2] for t in targets)  # skipped: options
        lines += [
            "",
            f"**Targets met: {passed} of {len(targets) - skipped}"
            + (f" ({skipped} skipped)" if skipped else "")
            + ".**",
            "",
            "| target | wanted | measured | verdict | how |",
            "|---|---|---:|---|---|",
        ]
        for name, wanted, value, ok, how in targets:
            verdict = "skipped" if "nan" in value else "PASS" if ok else "**MISS**"
            lines.append(f"| {name} | {wanted} | {value} | {verdict} | {how} |")
        lines += ["", "| micro-benchmark (pyperf --fast) | mean µs |", "|---|---:|"]
        lines += [f"| {name} | {value:.1f} |" for name, value in self.micro.items()]
        versions = {
            "python": platform.python_version(),
            "django": django.__version__,
            "gunicorn": gunicorn.__version__,
            "PyJWT": jwt.__version__,
            "PostgreSQL": psql("SHOW server_version"),
            "node": sh("node", "-v").strip(),
            **self.versions,
        }
        head = [
            f"Measured by bench/bench.py on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
            f"in {seconds:.0f} s; code {sh('git', 'rev-parse', '--short', 'HEAD').strip()}; "
            f"{os.cpu_count()} cores; {platform.platform()}.",
            "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
            "",
            *(f"- {fact}" for fact in self.facts),
            "",
        ]
        return "\n".join(head + lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Only a run with every default rewrites the Results of bench/RESULTS.md.",
    )
    add = parser.add_argument
    add("--duration", type=float, default=8.0, help="seconds measured per scenario (default 8)")
    add("--tenants", type=int, default=100_000, help="tenants in the PostgreSQL database (default 100000)")
    add("--spread", type=int, default=0, help="tenants the many-tenants run cycles through (default: all)")
    add(
        "--memory-requests",
        type=int,
        default=100_000,
        help="webhooks of the memory run (default 100000); 0 skips it",
    )
    add("--skip-ace", action="store_true", help="no atlassian-connect-express (no node, npm)")
    add("--ace-version", default="11.5.3", help="atlassian-connect-express from npm (default 11.5.3)")
    args = parser.parse_args()
    started, bench = time.monotonic(), Bench(args)
    try:
        with KeyServer() as bench.keys:  # the install key, on loopback, for the whole run
            bench.run()
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    text = bench.report(time.monotonic() - started)
    print("\n" + text)
    defaults = parser.parse_args([])
    if any(getattr(args, name) != getattr(defaults, name) for name in vars(defaults)):
        print("bench/RESULTS.md not written: a run with other than the default options")
        return 0
    # RESULTS.md keeps its hand-written head (title, method) and gets a new "## Results".
    results = BENCH / "RESULTS.md"
    head = results.read_text().split("\n## Results\n", 1)[0] if results.exists() else "# Benchmark results\n"
    results.write_text(f"{head.rstrip()}\n\n## Results\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
