#!/usr/bin/env python3
"""The benchmark of webex-archiver (run it through scripts/bench, which installs and builds
what it needs; see the top of that file for the scenarios and the output).

Python 3.11 standard library only. Every process it starts is stopped by its PID on exit;
every Garage data directory, Postgres database, SQLite file and downloaded file it creates
is deleted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MIB = 1 << 20
GIB = 1 << 30
MB = 1_000_000
MIN_FREE_GIB = 30
SCENARIOS = ("throughput", "memory", "discovery", "efficiency", "hostile", "report", "sites", "scale", "soak")
# Scenarios that need neither rclone nor Garage.
WITHOUT_S3 = ("report", "sites", "scale", "soak")
CONCURRENCY = 4

# Targets: (key, comparison, threshold, text shown in the table).
TARGETS = {
    "throughput_vs_rclone": (">=", 1.2, "≥ 1.2× rclone"),
    "throughput_vs_limit": (">=", 0.8, "≥ 0.8× min(source, sink)"),
    "peak_rss_mib_2gib": ("<=", 128, "≤ 128 MiB"),
    "peak_rss_mib_64mib": ("<=", 128, "≤ 128 MiB"),
    "peak_rss_growth_mib": ("<=", 16, "≤ 16 MiB (2 GiB − 64 MiB)"),
    "discovery_per_s_postgres": (">=", 10_000, "≥ 10,000/s"),
    "api_calls_per_recording": ("<=", 1.05, "≤ 1.05 beyond the download"),
    "hostile_peak_rss_mib_160mib_page": ("<=", 128, "≤ 128 MiB"),
    "report_json_s": ("<=", 30, "≤ 30 s"),
    "report_html_s": ("<=", 30, "≤ 30 s"),
    "sites_discovery_per_s_postgres": (">=", 10_000, "≥ 10,000/s"),
    "sites_api_calls_per_recording": ("<=", 1.02, "≤ 1.02 (details included)"),
    "cpu_s_per_gib": ("<=", 1.0, "≤ 1.0 s/GiB"),
    "scale_verify_all_rss_growth_mib": ("<=", 8, "≤ 8 MiB (flat)"),
    "scale_verify_sample_intact_s_100000": ("<=", 5, "≤ 5 s"),
    "soak_rss_growth": ("<=", 0.10, "≤ +10%"),
    "soak_fds_growth": ("<=", 0.10, "≤ +10%"),
    "soak_tasks_growth": ("<=", 0.10, "≤ +10%"),
}
for _backend in ("postgres", "sqlite"):
    TARGETS.update({
        f"scale_{_backend}_claim_p99_ms": ("<=", 5, "p99 ≤ 5 ms"),
        f"scale_{_backend}_page_new_p99_ms": ("<=", 25, "p99 ≤ 25 ms"),
        f"scale_{_backend}_finish_p99_ms": ("<=", 10, "p99 ≤ 10 ms"),
        f"scale_{_backend}_status_json_s": ("<=", 1, "≤ 1 s"),
        f"scale_{_backend}_metrics_p99_ms": ("<=", 50, "≤ 50 ms"),
        f"scale_{_backend}_verify_sample_s": ("<=", 5, "≤ 5 s"),
    })


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description="webex-archiver benchmark")
    p.add_argument("--runs", type=int, default=3, help="repetitions per scenario (default 3)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for trying the script")
    p.add_argument("--only", choices=SCENARIOS, help="run one scenario (efficiency runs throughput)")
    p.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


# --------------------------------------------------------------------------- processes

CHILDREN: list[subprocess.Popen] = []


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, **kw)
    CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Stops one child we started, by its PID."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def stop_all() -> None:
    for proc in list(CHILDREN):
        stop(proc, grace=5.0)


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def free_port(pair: bool = False) -> int:
    """A free port on 127.0.0.1 (and, with `pair`, the next one free too)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair or port >= 65535:
            if not pair:
                return port
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def wait_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not open 127.0.0.1:{port}")


HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(url: str, method: str = "GET", headers: dict | None = None, timeout: float = 120.0,
              body: dict | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    elif method == "POST":
        req.data = b""
    with HTTP.open(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def no_proxy_env(env: dict) -> dict:
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(k, None)
    return env


# --------------------------------------------------------------------------- services


class Sim:
    """`webex-archiver simulate` as a child process."""

    def __init__(self, name: str, scenario: dict, workdir: str):
        self.name = name
        path = os.path.join(workdir, f"sim-{name}.toml")
        with open(path, "w") as f:
            f.write(to_toml(scenario))
        self.log_path = os.path.join(workdir, f"sim-{name}.log")
        self.log = open(self.log_path, "wb")
        env = no_proxy_env(dict(os.environ, RUST_LOG="warn"))
        self.proc = spawn([BIN, "simulate", "--listen", "127.0.0.1:0", "--scenario", path],
                          stdout=subprocess.PIPE, stderr=self.log, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 600)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            stop(self.proc)
            raise RuntimeError(f"simulator {name} did not start; see {self.log_path}")
        self.banner = json.loads(line)
        self.api = self.banner["api_base_url"].rstrip("/")
        self.origin = re.match(r"^(https?://[^/]+)", self.api).group(1)
        self.token = self.banner["access_token"]

    def truth(self) -> list[dict]:
        return http_json(f"{self.origin}/_sim/recordings?digests=false", timeout=600)

    def counters(self) -> dict:
        return http_json(f"{self.origin}/_sim/counters")

    def reset(self) -> None:
        http_json(f"{self.origin}/_sim/counters/reset", method="POST")

    def link(self, rec: dict) -> str:
        """A fresh temporary direct download link (details call, admin style)."""
        url = f"{self.api}/recordings/{rec['id']}?hostEmail={urllib.request.quote(rec['host_email'])}"
        details = http_json(url, headers={"Authorization": f"Bearer {self.token}"})
        return details["temporaryDirectDownloadLinks"]["recordingDownloadLink"]

    def close(self) -> None:
        stop(self.proc)
        self.log.close()


class Garage:
    """A single-node Garage with a fresh data directory, deleted on close."""

    ACCESS_KEY = "GKwabench0001"
    BUCKET = "bench"
    REGION = "garage"

    def __init__(self, root: str):
        self.dir = tempfile.mkdtemp(prefix="wa-bench-garage.", dir=root)
        self.secret = "wa-bench-" + secrets.token_hex(16)
        port = free_port(pair=True)
        meta, data = os.path.join(self.dir, "meta"), os.path.join(self.dir, "data")
        os.makedirs(meta)
        os.makedirs(data)
        conf = os.path.join(self.dir, "garage.toml")
        with open(conf, "w") as f:
            f.write(
                f'metadata_dir = "{meta}"\ndata_dir = "{data}"\ndb_engine = "lmdb"\n'
                f"replication_factor = 1\nmetadata_fsync = false\ndata_fsync = false\n"
                f'rpc_bind_addr = "127.0.0.1:{port + 1}"\nrpc_public_addr = "127.0.0.1:{port + 1}"\n'
                f'rpc_secret = "{secrets.token_hex(32)}"\n\n[s3_api]\n'
                f'api_bind_addr = "127.0.0.1:{port}"\ns3_region = "{self.REGION}"\n'
                f'root_domain = ".s3.garage.localhost"\n'
            )
        os.chmod(conf, 0o600)
        self.log = open(os.path.join(self.dir, "garage.log"), "wb")
        env = no_proxy_env(dict(os.environ, GARAGE_DEFAULT_ACCESS_KEY=self.ACCESS_KEY,
                                GARAGE_DEFAULT_SECRET_KEY=self.secret, GARAGE_DEFAULT_BUCKET=self.BUCKET,
                                RUST_LOG="warn"))
        self.proc = spawn([GARAGE, "-c", conf, "server", "--single-node", "--default-bucket"],
                          stdout=self.log, stderr=self.log, env=env)
        try:
            wait_port(port, "garage")
        except Exception:
            self.close()
            raise
        self.endpoint = f"http://127.0.0.1:{port}"

    def aws_env(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": self.REGION, "AWS_ALLOW_HTTP": "true"}

    def rclone_env(self, workdir: str) -> dict:
        env = no_proxy_env(dict(os.environ))
        env.pop("AWS_CA_BUNDLE", None)  # breaks rclone 1.60's S3 client (see shared/s3/README.md)
        cfg = os.path.join(workdir, "rclone.conf")
        if not os.path.exists(cfg):
            open(cfg, "w").close()
        env.update({
            "RCLONE_CONFIG": cfg,
            "RCLONE_CONFIG_GARAGE_TYPE": "s3", "RCLONE_CONFIG_GARAGE_PROVIDER": "Other",
            "RCLONE_CONFIG_GARAGE_ENDPOINT": self.endpoint,
            "RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID": self.ACCESS_KEY,
            "RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY": self.secret,
            "RCLONE_CONFIG_GARAGE_REGION": self.REGION,
            "RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE": "true",
        })
        return env

    def close(self) -> None:
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def psql(sql: str) -> None:
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    subprocess.run(["psql", PG_ADMIN, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL, env=env)


class PgDb:
    counter = 0

    def __init__(self):
        PgDb.counter += 1
        self.name = f"wa_bench_{os.getpid()}_{PgDb.counter}"
        psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        psql(f"CREATE DATABASE {self.name}")
        base = PG_ADMIN.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def close(self) -> None:
        psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# --------------------------------------------------------------------------- the archiver


def archiver_env(sim: Sim, db_url: str, storage_url: str, data_dir: str, garage: Garage | None,
                 since: str = "2d", sign_payload: str = "never") -> dict:
    """The archiver's environment. `since` must cover the simulator's population.

    sign_payload: "never" mirrors a production deployment against an https:// endpoint,
    where the default ("auto") leaves integrity in transit to TLS, and matches the peer:
    rclone streams its uploads unsigned. The signed variant is measured too
    ("ours_signed", the default against this plain-http Garage).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBEX_ARCHIVER__")}
    no_proxy_env(env)
    env.update({
        "WEBEX_ARCHIVER__DATA__DIR": data_dir,
        "WEBEX_ARCHIVER__WEBEX__BASE_URL": sim.api,
        "WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS": "127.0.0.1",
        "WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN": sim.token,
        "WEBEX_ARCHIVER__WEBEX__SCOPE": "admin",
        "WEBEX_ARCHIVER__DATABASE__URL": db_url,
        "WEBEX_ARCHIVER__STORAGE__URL": storage_url,
        "WEBEX_ARCHIVER__SYNC__SINCE": since,
        "WEBEX_ARCHIVER__STORAGE__SIGN_PAYLOAD": sign_payload,
        "WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY": str(CONCURRENCY),
        "WEBEX_ARCHIVER__HTTP__LISTEN": "",
        "WEBEX_ARCHIVER__LOG__FORMAT": "json",
        "RUST_LOG": "warn",
    })
    if garage:
        env.update(garage.aws_env())
    return env


def parse_time_v(path: str) -> dict:
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("User time (seconds):"):
                out["user_s"] = float(line.split(":")[-1])
            elif line.startswith("System time (seconds):"):
                out["sys_s"] = float(line.split(":")[-1])
            elif line.startswith("Maximum resident set size (kbytes):"):
                out["max_rss_kib"] = int(line.split(":")[-1])
    return out


def summarize_log(path: str) -> dict:
    """Counts the archiver's JSON log lines by level and message (WARN and above)."""
    levels: dict[str, int] = {}
    messages: dict[str, int] = {}
    samples: list[str] = []
    summary = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                # Not a log line: `sync` prints its summary ("archived N, ...") to stderr.
                if line.startswith("archived "):
                    summary = line
                    continue
                levels["unparsed"] = levels.get("unparsed", 0) + 1
                if len(samples) < 5:
                    samples.append(line[:300])
                continue
            level = str(rec.get("level", "?")).upper()
            levels[level] = levels.get(level, 0) + 1
            fields = rec.get("fields", {}) if isinstance(rec.get("fields"), dict) else {}
            msg = fields.get("message") or rec.get("message") or "?"
            key = f"{level}: {msg}"
            messages[key] = messages.get(key, 0) + 1
            if len(samples) < 5:
                samples.append(line[:500])
    return {"summary": summary, "levels": levels, "messages": messages, "samples": samples}


RUN_SEQ = 0


def run_archiver(args: list[str], env: dict, workdir: str, label: str, timeout: float = 900,
                 ok_exits: tuple = (0,)) -> dict:
    """Runs the archiver under /usr/bin/time -v; returns wall, CPU, peak RSS, exit, log summary
    (and the stderr file). An exit status outside `ok_exits` is an error."""
    global RUN_SEQ
    RUN_SEQ += 1
    stem = os.path.join(workdir, f"run{RUN_SEQ:03d}-{label}")
    timef, logf, outf = stem + ".time", stem + ".log", stem + ".out"
    with open(logf, "wb") as err, open(outf, "wb") as out:
        t0 = time.monotonic()
        proc = spawn(["/usr/bin/time", "-v", "-o", timef, BIN, *args], stdout=out, stderr=err, env=env)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(proc, signal.SIGKILL)
            raise RuntimeError(f"{label}: webex-archiver {' '.join(args)} took over {timeout:.0f} s")
        wall = time.monotonic() - t0
        CHILDREN.remove(proc)
    res = {"wall_s": wall, "exit": rc, **parse_time_v(timef), "log": summarize_log(logf), "stderr": logf,
           "stdout": outf}
    keep = os.environ.get("WA_BENCH_KEEP_LOGS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(logf, keep)
    if rc not in ok_exits:
        with open(logf, errors="replace") as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"{label}: webex-archiver {' '.join(args)} exited {rc}:\n{tail}")
    return res


def status_json(env: dict) -> dict:
    out = subprocess.run([BIN, "status", "--json"], env=env, capture_output=True, check=True, timeout=120)
    return json.loads(out.stdout)


def api_requests(counters: dict, endpoints=("list", "admin_list", "sites", "details", "token")) -> dict:
    req = counters.get("requests", {})
    per = {e: sum(req.get(e, {}).values()) for e in endpoints}
    per["total"] = sum(per.values())
    return per


def non_2xx(counters: dict) -> dict:
    out = {}
    for ep, by_status in counters.get("requests", {}).items():
        for status, n in by_status.items():
            if not str(status).startswith("2"):
                out[f"{ep} {status}"] = n
    return out


# --------------------------------------------------------------------------- helpers


def to_toml(d: dict) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        raise TypeError(v)

    return "".join(f"{k} = {val(v)}\n" for k, v in d.items())


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    """(max - min) / median, as a fraction: how noisy the runs were."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2 or not statistics.median(xs):
        return None
    return (max(xs) - min(xs)) / statistics.median(xs)


def proc_cpu_s(pid: int) -> float:
    """user+system CPU seconds of a running process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:]))
    return sum(v), v[3] + v[4]


class CpuProbe:
    """Where the CPU went during one timed measurement: the tool (our children that
    finished: the archiver under /usr/bin/time, curl, rclone), Garage, the simulator, and
    how busy the whole machine was (2 cores shared by all of them)."""

    def __init__(self, garage: "Garage | None", sim: "Sim"):
        self.pids = {"garage": garage.proc.pid if garage else None, "sim": sim.proc.pid}
        self.start = {k: proc_cpu_s(p) if p else 0.0 for k, p in self.pids.items()}
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children = ru.ru_utime + ru.ru_stime
        self.jiffies = machine_jiffies()

    def stop(self) -> dict:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        total, idle = machine_jiffies()
        dt_all = total - self.jiffies[0]
        out = {"tool_cpu_s": ru.ru_utime + ru.ru_stime - self.children}
        for k, p in self.pids.items():
            out[f"{k}_cpu_s"] = proc_cpu_s(p) - self.start[k] if p else 0.0
        out["machine_busy"] = 1 - (idle - self.jiffies[1]) / dt_all if dt_all else None
        return out


def pool_map(fn, items, workers=CONCURRENCY):
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def check_disk(root: str, need_gib: float) -> None:
    free = shutil.disk_usage(root).free / GIB
    if free < need_gib:
        raise SystemExit(f"bench: only {free:.1f} GiB free under {root}; need at least {need_gib:.0f} GiB")


def curl(link: str, dest: str = "/dev/null") -> int:
    out = subprocess.run(["curl", "-s", "-f", "--noproxy", "*", "-o", dest, "-w", "%{size_download}", link],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"curl exited {out.returncode}: {out.stderr.strip()}")
    return int(float(out.stdout.strip()))


def rclone(args: list[str], env: dict, timeout: float = 900) -> None:
    out = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"rclone {' '.join(args[:1])} exited {out.returncode}: {out.stderr.strip()[-1500:]}")


def rclone_size(remote: str, env: dict) -> dict:
    out = subprocess.run(["rclone", "size", "--json", remote], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"rclone size {remote}: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def sha256_cpu_s(size: int) -> float:
    """CPU seconds (user + system) of benches/sha256.rs hashing `size` bytes (rounded up
    to whole GiB, then scaled back), 64 KiB at a time: the hash's own cost per byte."""
    gib = max(1, -(-size // GIB))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([bench_executable("sha256"), "--gib", str(gib), "--chunk", str(64 * 1024)], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return cpu * size / (gib * GIB)


def mp4_scenario(seed: int, recordings: int, size: int) -> dict:
    # Produced within the last day (a day's recordings of an org), so one 7-day window
    # per site lists them: what a daily pass of `run` sees.
    return {"seed": seed, "recordings": recordings, "size": size, "span": "1d",
            "format_weights": {"MP4": 1}, "prevent_downloading_fraction": 0.0, "deleted_fraction": 0.0,
            "link_lifetime": "3h"}


# --------------------------------------------------------------------------- scenarios


def scenario_throughput(opts, root: str, workdir: str) -> dict:
    n, size = (8, 32 * MIB) if opts.quick else (32, 128 * MIB)
    sim = Sim("throughput", mp4_scenario(11, n, size), workdir)
    files = tempfile.mkdtemp(prefix="wa-bench-files.", dir=root)
    runs = []
    try:
        truth = sim.truth()
        assert len(truth) == n and all(r["format"] == "MP4" and not r["prevent_downloading"] for r in truth), \
            "the simulator's population is not n downloadable MP4 recordings"
        total = sum(r["size_bytes"] for r in truth)
        log(f"throughput: {n} recordings x {size / MIB:.0f} MiB = {total / MB:.0f} MB; "
            f"downloading them once into {files} (for the sink limit)")

        def fetch_local(rec):
            got = curl(sim.link(rec), os.path.join(files, f"{rec['id']}.mp4"))
            assert got == rec["size_bytes"], f"{rec['id']}: got {got} of {rec['size_bytes']} bytes"

        pool_map(fetch_local, truth)

        tools = ["ours", "source", "sink", "peer", "ours_signed"]
        for rep in range(opts.runs):
            check_disk(root, 20)
            order = tools[rep % len(tools):] + tools[:rep % len(tools)]
            load = os.getloadavg()[0]
            run = {"run": rep + 1, "order": order, "loadavg_1m_before": round(load, 2)}
            for tool in order:
                # A fresh Garage for every tool that writes: Garage stores blocks by content
                # hash, so a tool writing the same recordings after another would only add
                # references to blocks already stored, and be measured at a discount.
                garage = Garage(root) if tool != "source" else None
                try:
                    os.sync()  # no writeback debt from the previous tool
                    if tool == "ours":
                        db = PgDb()
                        try:
                            env = archiver_env(sim, db.url, f"s3://{Garage.BUCKET}/ours", os.path.join(workdir, "data"),
                                               garage)
                            sim.reset()
                            probe = CpuProbe(garage, sim)
                            res = run_archiver(["sync"], env, workdir, f"throughput-r{rep + 1}")
                            run["cpu_ours"] = probe.stop()
                            counters = sim.counters()
                            status = status_json(env)
                        finally:
                            db.close()
                        archived = status.get("archived", 0)
                        if archived != n:
                            raise RuntimeError(f"ours archived {archived} of {n}: {status}")
                        calls = api_requests(counters)
                        run.update({
                            "ours_s": res["wall_s"], "ours_mb_s": total / MB / res["wall_s"],
                            "ours_cpu_s": res["user_s"] + res["sys_s"], "ours_user_s": res["user_s"],
                            "ours_sys_s": res["sys_s"], "ours_max_rss_mib": res["max_rss_kib"] / 1024,
                            "api_calls": calls, "api_calls_per_recording": calls["total"] / archived,
                            "details_per_recording": calls["details"] / archived,
                            "downloads": counters.get("downloads"), "non_2xx": non_2xx(counters),
                            "rate_limited": counters.get("rate_limited"), "token_leaks": counters.get("token_leaks"),
                            "bytes_served": counters.get("bytes_served"), "ours_log": res["log"],
                        })
                        # What ours stored: the recordings plus one metadata.json each.
                        got = rclone_size(f"garage:{Garage.BUCKET}/ours/", garage.rclone_env(workdir))
                        run["ours_stored"] = got
                        if got.get("count") != 2 * n or got.get("bytes", 0) < total:
                            raise RuntimeError(f"ours stored {got}, expected {2 * n} objects and over {total} bytes")
                    elif tool == "ours_signed":
                        db = PgDb()
                        try:
                            env = archiver_env(sim, db.url, f"s3://{Garage.BUCKET}/ours", os.path.join(workdir, "data"),
                                               garage, sign_payload="auto")
                            probe = CpuProbe(garage, sim)
                            res = run_archiver(["sync"], env, workdir, f"throughput-signed-r{rep + 1}")
                            run["cpu_ours_signed"] = probe.stop()
                            archived = status_json(env).get("archived", 0)
                        finally:
                            db.close()
                        if archived != n:
                            raise RuntimeError(f"ours (signed) archived {archived} of {n}")
                        run.update({"ours_signed_s": res["wall_s"], "ours_signed_mb_s": total / MB / res["wall_s"],
                                    "ours_signed_cpu_s": res["user_s"] + res["sys_s"]})
                    elif tool == "source":
                        links = [sim.link(r) for r in truth]
                        probe = CpuProbe(None, sim)
                        t0 = time.monotonic()
                        got = pool_map(curl, links)
                        t = time.monotonic() - t0
                        run["cpu_source"] = probe.stop()
                        if sum(got) != total:
                            raise RuntimeError(f"curl received {sum(got)} of {total} bytes")
                        run.update({"source_s": t, "source_mb_s": total / MB / t})
                    elif tool == "sink":
                        renv = garage.rclone_env(workdir)
                        probe = CpuProbe(garage, sim)
                        t0 = time.monotonic()
                        rclone(["copy", "--transfers", str(CONCURRENCY), files, f"garage:{Garage.BUCKET}/sink/"], renv)
                        t = time.monotonic() - t0
                        run["cpu_sink"] = probe.stop()
                        got = rclone_size(f"garage:{Garage.BUCKET}/sink/", renv)
                        if got.get("bytes") != total:
                            raise RuntimeError(f"rclone copy stored {got} (expected {total} bytes)")
                        run.update({"sink_s": t, "sink_mb_s": total / MB / t})
                    elif tool == "peer":
                        renv = garage.rclone_env(workdir)
                        links = [(sim.link(r), r["id"]) for r in truth]
                        probe = CpuProbe(garage, sim)
                        t0 = time.monotonic()
                        pool_map(lambda li: rclone(["copyurl", li[0], f"garage:{Garage.BUCKET}/peer/{li[1]}.mp4"],
                                                   renv), links)
                        t = time.monotonic() - t0
                        run["cpu_peer"] = probe.stop()
                        got = rclone_size(f"garage:{Garage.BUCKET}/peer/", renv)
                        if got.get("bytes") != total:
                            raise RuntimeError(f"rclone copyurl stored {got} (expected {total} bytes)")
                        run.update({"peer_s": t, "rclone_mb_s": total / MB / t})
                finally:
                    if garage:
                        garage.close()
            run["throughput_vs_rclone"] = run["ours_mb_s"] / run["rclone_mb_s"]
            run["throughput_vs_limit"] = run["ours_mb_s"] / min(run["source_mb_s"], run["sink_mb_s"])
            run["cpu_s_per_gib"] = run["ours_cpu_s"] / (total / GIB)
            run["rclone_cpu_s_per_gib"] = run["cpu_peer"]["tool_cpu_s"] / (total / GIB)
            run["sha256_cpu_s_per_gib"] = sha256_cpu_s(total) / (total / GIB)
            run["cpu_s_per_gib_without_hash"] = run["cpu_s_per_gib"] - run["sha256_cpu_s_per_gib"]
            run["bottleneck"] = "source" if run["source_mb_s"] < run["sink_mb_s"] else "sink"
            runs.append(run)
            log(f"throughput run {rep + 1}/{opts.runs} ({' '.join(order)}): ours {run['ours_mb_s']:.0f} MB/s, "
                f"source {run['source_mb_s']:.0f}, sink {run['sink_mb_s']:.0f}, rclone {run['rclone_mb_s']:.0f}; "
                f"ours/rclone {run['throughput_vs_rclone']:.2f}, ours/limit {run['throughput_vs_limit']:.2f}; "
                f"CPU {run['ours_cpu_s']:.1f} s, RSS {run['ours_max_rss_mib']:.0f} MiB, "
                f"{run['api_calls_per_recording']:.2f} API calls/recording")
    finally:
        sim.close()
        shutil.rmtree(files, ignore_errors=True)
    col = lambda k: [r[k] for r in runs]
    return {
        "params": {"recordings": n, "size_bytes": size, "total_bytes": total, "concurrency": CONCURRENCY},
        "throughput_mb_s": median(col("ours_mb_s")),
        "throughput_signed_mb_s": median(col("ours_signed_mb_s")),
        "throughput_signed_vs_rclone": median([r["ours_signed_mb_s"] / r["rclone_mb_s"] for r in runs]),
        "source_limit_mb_s": median(col("source_mb_s")),
        "sink_limit_mb_s": median(col("sink_mb_s")),
        "rclone_mb_s": median(col("rclone_mb_s")),
        "throughput_vs_rclone": median(col("throughput_vs_rclone")),
        "throughput_vs_limit": median(col("throughput_vs_limit")),
        "throughput_cpu_s": median(col("ours_cpu_s")),
        "throughput_peak_rss_mib": median(col("ours_max_rss_mib")),
        "cpu_s_per_gib": median(col("cpu_s_per_gib")),
        "rclone_cpu_s_per_gib": median(col("rclone_cpu_s_per_gib")),
        "sha256_cpu_s_per_gib": median(col("sha256_cpu_s_per_gib")),
        "cpu_s_per_gib_without_hash": median(col("cpu_s_per_gib_without_hash")),
        "api_calls_per_recording": median(col("api_calls_per_recording")),
        "details_calls_per_recording": median(col("details_per_recording")),
        "cpu_by_tool": {
            tool: {
                "mb_s": median(col(mb)),
                **{k: median([r[f"cpu_{tool}"][k] for r in runs])
                   for k in ("tool_cpu_s", "garage_cpu_s", "sim_cpu_s", "machine_busy")},
            }
            for tool, mb in (("ours", "ours_mb_s"), ("ours_signed", "ours_signed_mb_s"), ("source", "source_mb_s"),
                             ("sink", "sink_mb_s"), ("peer", "rclone_mb_s"))
        },
        "bottleneck_by_run": col("bottleneck"),
        "throughput_runs": runs,
    }


def scenario_memory(opts, root: str, workdir: str) -> dict:
    big, small = (256 * MIB, 16 * MIB) if opts.quick else (2 * GIB, 64 * MIB)
    sims = {"big": Sim("memory-big", mp4_scenario(21, 1, big), workdir),
            "small": Sim("memory-small", mp4_scenario(22, 1, small), workdir)}
    runs = []
    try:
        for rep in range(opts.runs):
            order = ["big", "small"] if rep % 2 == 0 else ["small", "big"]
            garage = Garage(root)
            run = {"run": rep + 1, "order": order}
            try:
                for which in order:
                    db = PgDb()
                    try:
                        env = archiver_env(sims[which], db.url, f"s3://{Garage.BUCKET}/mem-{which}",
                                           os.path.join(workdir, "data"), garage)
                        res = run_archiver(["sync"], env, workdir, f"memory-{which}-r{rep + 1}")
                        if status_json(env).get("archived") != 1:
                            raise RuntimeError(f"memory {which}: the recording was not archived")
                    finally:
                        db.close()
                    run[f"{which}_rss_mib"] = res["max_rss_kib"] / 1024
                    run[f"{which}_s"] = res["wall_s"]
                    run[f"{which}_log"] = res["log"]
            finally:
                garage.close()
            run["growth_mib"] = run["big_rss_mib"] - run["small_rss_mib"]
            runs.append(run)
            log(f"memory run {rep + 1}/{opts.runs}: peak RSS {run['big_rss_mib']:.1f} MiB ({big / MIB:.0f} MiB file, "
                f"{run['big_s']:.1f} s), {run['small_rss_mib']:.1f} MiB ({small / MIB:.0f} MiB file)")
    finally:
        for s in sims.values():
            s.close()
    col = lambda k: [r[k] for r in runs]
    return {
        "params": {"big_bytes": big, "small_bytes": small, "concurrency": CONCURRENCY},
        "peak_rss_mib_2gib": median(col("big_rss_mib")),
        "peak_rss_mib_64mib": median(col("small_rss_mib")),
        "peak_rss_growth_mib": median(col("growth_mib")),
        "memory_runs": runs,
    }


def scenario_hostile(opts, root: str, workdir: str) -> dict:
    """Issue 11's two figures. (1) A storm of 429s with `Retry-After: 0` for 15 s, started
    when `sync` starts: how many requests does the archiver send into it? (2) One listing
    answer of 160 MiB (chunked, no Content-Length) on the first request: peak RSS of `sync`,
    against the same run without it."""
    storm_s = 5 if opts.quick else 15
    page = (40 if opts.quick else 160) * MIB
    base = {**mp4_scenario(31, 6, 256 * 1024), "sites": [{"url": "acme.webex.com", "default": True}]}
    sims = {
        "storm": Sim("hostile-storm", base, workdir),
        "page": Sim("hostile-page", base, workdir),
        "plain": Sim("hostile-plain", base, workdir),
    }
    runs = []
    try:
        for rep in range(opts.runs):
            run = {"run": rep + 1}
            for which in ("storm", "page", "plain"):
                sim = sims[which]
                db = PgDb()
                try:
                    env = archiver_env(sim, db.url, "file://" + os.path.join(workdir, f"hostile-{which}-{rep}"),
                                       os.path.join(workdir, "data"), None)
                    sim.reset()
                    if which == "storm":
                        http_json(f"{sim.origin}/_sim/control", method="POST", body={"burst_429": {
                            "duration": f"{storm_s}s", "retry_after_raw": "0"}})
                    elif which == "page":
                        http_json(f"{sim.origin}/_sim/control", method="POST", body={"faults": [
                            {"kind": "huge_page", "bytes": page, "chunked": True, "endpoint": "admin_list",
                             "times": 1}]})
                    res = run_archiver(["sync"], env, workdir, f"hostile-{which}-r{rep + 1}")
                    if status_json(env).get("archived") != 6:
                        raise RuntimeError(f"hostile {which}: not every recording was archived")
                    counters = sim.counters()
                finally:
                    db.close()
                run[f"{which}_rss_mib"] = res["max_rss_kib"] / 1024
                run[f"{which}_s"] = res["wall_s"]
                if which == "storm":
                    run["storm_requests"] = counters["rate_limited"]
            runs.append(run)
            log(f"hostile run {rep + 1}/{opts.runs}: {run['storm_requests']} requests into a {storm_s} s storm of "
                f"Retry-After: 0; peak RSS {run['page_rss_mib']:.1f} MiB with a {page // MIB} MiB page, "
                f"{run['plain_rss_mib']:.1f} MiB without")
    finally:
        for sim in sims.values():
            sim.close()
    col = lambda k: [r[k] for r in runs]
    return {
        "params": {"storm_s": storm_s, "page_bytes": page},
        "hostile_storm_requests": median(col("storm_requests")),
        "hostile_peak_rss_mib_160mib_page": median(col("page_rss_mib")),
        "hostile_peak_rss_mib_without_page": median(col("plain_rss_mib")),
        "hostile_runs": runs,
    }


def scenario_discovery(opts, root: str, workdir: str) -> dict:
    n = 10_000 if opts.quick else 100_000
    t0 = time.monotonic()
    sim = Sim("discovery", {"seed": 31, "recordings": n, "span": "60d", "format_weights": {"MP4": 1},
                            "prevent_downloading_fraction": 0.0, "deleted_fraction": 0.0}, workdir)
    log(f"discovery: simulator with {n} recordings up in {time.monotonic() - t0:.1f} s")
    runs = []
    try:
        for rep in range(opts.runs):
            # postgres_nossl is a diagnostic: the same database without TLS on the local
            # connection (the default URL lets the client negotiate TLS when the server offers it).
            backends = ["postgres", "sqlite", "postgres_nossl"]
            order = backends[rep % 3:] + backends[:rep % 3]
            run = {"run": rep + 1, "order": order}
            for backend in order:
                sqlite_dir = tempfile.mkdtemp(prefix="wa-bench-sqlite.", dir=root)
                db = PgDb() if backend.startswith("postgres") else None
                try:
                    db_url = f"sqlite://{sqlite_dir}/state.db"
                    if backend == "postgres":
                        db_url = db.url
                    elif backend == "postgres_nossl":
                        db_url = db.url + "?sslmode=disable"
                    env = archiver_env(sim, db_url, f"file://{sqlite_dir}/archive", os.path.join(sqlite_dir, "data"),
                                       None, since="70d")
                    sim.reset()
                    res = run_archiver(["sync", "--discover-only"], env, workdir, f"discovery-{backend}-r{rep + 1}")
                    counters = sim.counters()
                    status = status_json(env)
                finally:
                    if db:
                        db.close()
                    shutil.rmtree(sqlite_dir, ignore_errors=True)
                recorded = status.get("pending", 0)
                if recorded != n:
                    log(f"discovery {backend}: {recorded} pending after the pass, the simulator has {n}")
                calls = api_requests(counters)
                run.update({
                    f"{backend}_s": res["wall_s"], f"{backend}_recorded": recorded,
                    f"{backend}_per_s": recorded / res["wall_s"], f"{backend}_api_requests": calls,
                    f"{backend}_cpu_s": res["user_s"] + res["sys_s"], f"{backend}_max_rss_mib": res["max_rss_kib"] / 1024,
                    f"{backend}_non_2xx": non_2xx(counters), f"{backend}_log": res["log"],
                })
            runs.append(run)
            log(f"discovery run {rep + 1}/{opts.runs}: postgres {run['postgres_per_s']:.0f}/s "
                f"({run['postgres_s']:.1f} s), sqlite {run['sqlite_per_s']:.0f}/s ({run['sqlite_s']:.1f} s), "
                f"postgres with sslmode=disable {run['postgres_nossl_per_s']:.0f}/s ({run['postgres_nossl_s']:.1f} s), "
                f"{run['postgres_api_requests']['total']} API requests")
    finally:
        sim.close()
    col = lambda k: [r[k] for r in runs]
    return {
        "params": {"recordings": n},
        "discovery_per_s_postgres": median(col("postgres_per_s")),
        "discovery_per_s_sqlite": median(col("sqlite_per_s")),
        "discovery_per_s_postgres_sslmode_disable": median(col("postgres_nossl_per_s")),
        "discovery_api_requests": median([r["postgres_api_requests"]["total"] for r in runs]
                                         + [r["sqlite_api_requests"]["total"] for r in runs]),
        "discovery_runs": runs,
    }


# The report scenario's year: one row per recording, created evenly over 2025 (UTC), in
# a realistic mix of states, as the archiver would have left them. `r` is i % 1000.
REPORT_FILL = """
INSERT INTO recordings (id, scope, site_url, host_email, meeting_id, topic, format, create_time, size_bytes,
    listing, state, attempts, lease_owner, lease_expires_at, failure_reason, last_error, object_prefix, media_key,
    metadata_key, sha256, bytes, files, archived_at, deleted_at_source, purged_at_source)
SELECT id, 'admin:acme.webex.com', 'acme.webex.com', 'host' || (i % 700) || '@acme.example', md5('m' || i),
    'Weekly sync ' || (i % 97), 'MP4', t, size, jsonb_build_object('id', id, 'createTime', t),
    state, CASE WHEN state = 'pending' THEN 0 ELSE 1 END,
    CASE WHEN state = 'archiving' THEN 'bench/lease' END,
    CASE WHEN state = 'archiving' THEN now() + interval '2 minutes' END,
    CASE state WHEN 'failed' THEN 'http_4xx' WHEN 'not_downloadable' THEN 'not_downloadable' END,
    CASE state WHEN 'failed' THEN 'Webex answered 404 (trackingId bench)' END,
    CASE WHEN state = 'archived' THEN dir END,
    CASE WHEN state = 'archived' THEN dir || '/recording.mp4' END,
    CASE WHEN state = 'archived' THEN dir || '/metadata.json' END,
    CASE WHEN state = 'archived' THEN sha END,
    CASE WHEN state = 'archived' THEN size END,
    CASE WHEN state = 'archived' THEN
        jsonb_build_array(jsonb_build_object('kind', 'recording', 'key', dir || '/recording.mp4', 'sha256', sha,
            'size', size, 'content_type', 'video/mp4'))
        || CASE WHEN i % 10 = 0 THEN jsonb_build_array(jsonb_build_object('kind', 'transcript',
            'key', dir || '/transcript.vtt', 'sha256', md5('v' || i) || md5('w' || i), 'size', 20000 + i % 5000,
            'content_type', 'text/vtt')) ELSE '[]'::jsonb END
    END,
    CASE WHEN state = 'archived' THEN t + interval '2 hours' END,
    CASE WHEN i % 100 < 3 OR state = 'lost_at_source' THEN t + interval '30 days' END,
    CASE WHEN i % 100 = 0 OR state = 'lost_at_source' THEN t + interval '60 days' END
FROM (
    SELECT i, id, t, size, sha, to_char(t, 'YYYY/MM/DD') || '/' || id AS dir,
        CASE WHEN r < 960 THEN 'archived' WHEN r < 980 THEN 'not_downloadable' WHEN r < 988 THEN 'failed'
             WHEN r < 993 THEN 'lost_at_source' WHEN r < 999 THEN 'pending' ELSE 'archiving' END AS state
    FROM (
        SELECT i, i % 1000 AS r, md5('r' || i) AS id,
            timestamptz '2025-01-01 00:00:00+00' + (i::float8 / {n}) * interval '365 days' AS t,
            (20000000 + (i % 997) * 131071)::bigint AS size, md5('a' || i) || md5('b' || i) AS sha
        FROM generate_series(0, {n} - 1) AS i
    ) AS numbered
) AS rows;
INSERT INTO quarantine (key, recording_id, scope, reason, raw, window_from, window_to)
SELECT 'sha256:' || md5('q' || k) || md5('x' || k), NULL, 'admin:acme.webex.com', 'no id',
    '{"topic": "unreadable"}', timestamptz '2025-01-01 00:00:00+00' + k * interval '30 days',
    timestamptz '2025-01-01 00:00:00+00' + (k + 1) * interval '30 days'
FROM generate_series(0, 11) AS k;
ANALYZE recordings;
ANALYZE quarantine;
"""


def scenario_report(opts, root: str, workdir: str) -> dict:
    """Issue 14's figure: `report` of a year of 1,000,000 recordings on Postgres (JSON to
    /dev/null, and the HTML page), from a database filled by one INSERT ... SELECT
    generate_series."""
    n = 100_000 if opts.quick else 1_000_000
    db = PgDb()
    runs = []
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBEX_ARCHIVER__")}
        env.update({"WEBEX_ARCHIVER__DATABASE__URL": db.url, "WEBEX_ARCHIVER__LOG__FORMAT": "json",
                    "RUST_LOG": "warn"})
        run_archiver(["migrate"], env, workdir, "report-migrate")
        t0 = time.monotonic()
        subprocess.run(["psql", db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=REPORT_FILL.replace("{n}", str(n)),
                       text=True, check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))
        fill_s = time.monotonic() - t0
        log(f"report: filled {n:,} recordings in {fill_s:.0f} s")
        page = os.path.join(workdir, "report.html")
        period = ["--from", "2025-01-01", "--to", "2026-01-01"]
        for rep in range(opts.runs):
            run = {"run": rep + 1}
            for form, out in (("json", "/dev/null"), ("html", page)):
                # Exit 1: the year has gaps (failed, pending, archiving, quarantined), as real years do.
                res = run_archiver(["report", *period, "--format", form, "--out", out], env, workdir,
                                   f"report-{form}-r{rep + 1}", ok_exits=(0, 1))
                with open(res["stderr"], errors="replace") as f:
                    said = re.search(r"report .*: (\d+) recording\(s\), (\d+) archived, (\d+) gap", f.read())
                if not said:
                    raise RuntimeError(f"report {form}: no summary line on stderr")
                run.update({f"{form}_s": res["wall_s"], f"{form}_max_rss_mib": res["max_rss_kib"] / 1024,
                            f"{form}_cpu_s": res["user_s"] + res["sys_s"], "rows": int(said.group(1)),
                            "gaps": int(said.group(3)), f"{form}_exit": res["exit"]})
            run["html_bytes"] = os.path.getsize(page)
            os.remove(page)
            if run["rows"] != n:
                raise RuntimeError(f"report counted {run['rows']} recordings, the database has {n}")
            runs.append(run)
            log(f"report run {rep + 1}/{opts.runs}: JSON {run['json_s']:.1f} s ({run['json_max_rss_mib']:.0f} MiB), "
                f"HTML {run['html_s']:.1f} s ({run['html_bytes'] / MB:.1f} MB, {run['html_max_rss_mib']:.0f} MiB), "
                f"{run['rows']:,} recordings, {run['gaps']:,} gaps")
    finally:
        db.close()
    col = lambda k: [r[k] for r in runs]
    return {
        "params": {"recordings": n, "fill_s": fill_s},
        "report_json_s": median(col("json_s")),
        "report_html_s": median(col("html_s")),
        "report_rows": runs[-1]["rows"] if runs else None,
        "report_json_max_rss_mib": median(col("json_max_rss_mib")),
        "report_html_max_rss_mib": median(col("html_max_rss_mib")),
        "report_html_mb": median([r["html_bytes"] / MB for r in runs]),
        "report_runs": runs,
    }


def scenario_sites(opts, root: str, workdir: str) -> dict:
    """Issue 16's fifty sites: a simulator with 50 sites x 2,000 recordings (produced over
    the last 28 days, all downloadable), and an archiver with the defaults (`sync.since` 30
    days, `sync.site_concurrency` 4, the daily deletion sweep due at the first pass).
    (1) `sync --discover-only` into Postgres: recordings recorded per second, wall time of
    the whole command. (2) `sync` into Postgres and a local directory: API calls (site list,
    listings, details, tokens; not downloads) per archived recording, counted by the
    simulator, with what each kind of call cost."""
    n_sites, per_site = (50, 200) if opts.quick else (50, 2_000)
    n = n_sites * per_site
    scenario = {"seed": 41, "recordings": n, "span": "28d", "size": 16 * 1024, "format_weights": {"MP4": 1},
                "prevent_downloading_fraction": 0.0, "deleted_fraction": 0.0, "link_lifetime": "3h",
                "sites": [{"url": f"site{i:02d}.webex.com", "default": i == 0} for i in range(n_sites)]}
    t0 = time.monotonic()
    sim = Sim("sites", scenario, workdir)
    log(f"sites: simulator with {n_sites} sites x {per_site} recordings up in {time.monotonic() - t0:.1f} s")
    runs = []
    try:
        truth = sim.truth()
        per_site_counts = {}
        for rec in truth:
            per_site_counts[rec["site_url"]] = per_site_counts.get(rec["site_url"], 0) + 1
        if len(per_site_counts) != n_sites or len(truth) != n:
            raise RuntimeError(f"the simulator holds {len(truth)} recordings on {len(per_site_counts)} sites")
        for rep in range(opts.runs):
            run = {"run": rep + 1}
            for what in ("discover", "archive"):
                out = tempfile.mkdtemp(prefix="wa-bench-sites.", dir=root)
                db = PgDb()
                try:
                    env = archiver_env(sim, db.url, f"file://{out}/archive", os.path.join(out, "data"), None,
                                       since="30d")
                    sim.reset()
                    args = ["sync", "--discover-only"] if what == "discover" else ["sync"]
                    res = run_archiver(args, env, workdir, f"sites-{what}-r{rep + 1}", timeout=3600)
                    counters = sim.counters()
                    status = status_json(env)
                finally:
                    db.close()
                    shutil.rmtree(out, ignore_errors=True)
                calls = api_requests(counters)
                by_status = counters.get("listings_by_status", {})
                run.update({
                    f"{what}_s": res["wall_s"], f"{what}_cpu_s": res["user_s"] + res["sys_s"],
                    f"{what}_max_rss_mib": res["max_rss_kib"] / 1024, f"{what}_api_calls": calls,
                    f"{what}_listings_by_status": by_status, f"{what}_non_2xx": non_2xx(counters),
                    f"{what}_max_listings_in_flight": counters.get("max_listings_in_flight"),
                    f"{what}_rate_limited": counters.get("rate_limited"), f"{what}_log": res["log"],
                })
                if what == "discover":
                    recorded = status.get("pending", 0)
                    if recorded != n:
                        raise RuntimeError(f"sites: {recorded} recordings recorded by discovery, the simulator has {n}")
                    run["discovery_per_s"] = recorded / res["wall_s"]
                else:
                    archived = status.get("archived", 0)
                    if archived != n:
                        raise RuntimeError(f"sites: {archived} of {n} recordings archived: {status}")
                    run.update({
                        "archived": archived, "api_calls_per_recording": calls["total"] / archived,
                        "details_per_recording": calls["details"] / archived,
                        "listings_per_recording": (calls["admin_list"] + calls["list"]) / archived,
                        "archive_per_s": archived / res["wall_s"],
                    })
            runs.append(run)
            a = run["archive_api_calls"]
            log(f"sites run {rep + 1}/{opts.runs}: discovery {run['discovery_per_s']:.0f} recordings/s "
                f"({run['discover_s']:.1f} s, {run['discover_max_listings_in_flight']} sites at once); archive "
                f"{run['archive_per_s']:.0f} recordings/s ({run['archive_s']:.0f} s); "
                f"{run['api_calls_per_recording']:.4f} API calls per recording: {a['details']} details, "
                f"{a['admin_list']} listings {run['archive_listings_by_status']}, {a['sites']} site lists, "
                f"{a['token']} token")
    finally:
        sim.close()
    col = lambda k: [r[k] for r in runs]
    last = runs[-1] if runs else {}
    return {
        "params": {"sites": n_sites, "recordings": n, "per_site_min": min(per_site_counts.values()),
                   "per_site_max": max(per_site_counts.values()), "span": scenario["span"], "since": "30d",
                   "concurrency": CONCURRENCY},
        "sites_discovery_per_s_postgres": median(col("discovery_per_s")),
        "sites_discovery_s": median(col("discover_s")),
        "sites_api_calls_per_recording": median(col("api_calls_per_recording")),
        "sites_details_calls_per_recording": median(col("details_per_recording")),
        "sites_listing_calls_per_recording": median(col("listings_per_recording")),
        "sites_api_calls": last.get("archive_api_calls"),
        "sites_listings_by_status": last.get("archive_listings_by_status"),
        "sites_max_listings_in_flight": median(col("discover_max_listings_in_flight")),
        "sites_archive_per_s": median(col("archive_per_s")),
        "sites_runs": runs,
    }


def bench_executable(name: str) -> str:
    """The path of the `benches/<name>.rs` executable (release profile), built when missing."""
    if name in BENCHES:
        return BENCHES[name]
    out = subprocess.run(["cargo", "bench", "--locked", "--quiet", "--no-run", "--message-format=json",
                          "--bench", name], cwd=REPO, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"cargo bench --no-run --bench {name}: {out.stderr.strip()[-1500:]}")
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == name \
                and msg.get("executable"):
            BENCHES[name] = msg["executable"]
            return BENCHES[name]
    raise RuntimeError(f"cargo bench --no-run --bench {name} named no executable")


BENCHES: dict[str, str] = {}


def quantiles_ms(samples: list[float]) -> dict:
    """p50 and p99 (nearest rank) of wall times in milliseconds, as benches/scale.rs computes them."""
    s = sorted(samples)
    rank = lambda q: s[min(len(s), max(1, -(-int(q * 1000) * len(s) // 1000))) - 1]
    return {"n": len(s), "p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": s[-1]}


def scrape(port: int) -> tuple[float, str]:
    """One GET /metrics: wall time in milliseconds and the body."""
    t0 = time.monotonic()
    with HTTP.open(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        body = r.read().decode()
    return (time.monotonic() - t0) * 1000, body


def metric(body: str, name: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def serve_metrics(sim: "Sim", db_url: str, out: str, workdir: str, label: str, extra: dict | None = None):
    """`webex-archiver run` with its HTTP endpoint on a free port; returns (process, port, log path)."""
    port = free_port()
    env = archiver_env(sim, db_url, f"file://{out}/archive", os.path.join(out, "data"), None, since="1d")
    env.update({"WEBEX_ARCHIVER__HTTP__LISTEN": f"127.0.0.1:{port}", **(extra or {})})
    logf = os.path.join(workdir, f"{label}.log")
    with open(logf, "wb") as err:
        proc = spawn([BIN, "run"], stdout=subprocess.DEVNULL, stderr=err, env=env)
    wait_port(port, f"{label} /metrics", timeout=120)
    return proc, port, logf


# The verify scenario's archive: every recording archived, with a one-byte recording file
# and its metadata.json really in a local directory (written by the bench), so that
# `verify` finds everything intact and its memory shows only what it holds per row.
VERIFY_FILL = """
INSERT INTO recordings (id, scope, site_url, create_time, listing, state, attempts, object_prefix, media_key,
    metadata_key, sha256, bytes, files, archived_at)
SELECT id, 'admin:site' || i % 50, 'site' || i % 50, now() - i * interval '1 minute', jsonb_build_object('id', id),
    'archived', 1, 'v/' || id, 'v/' || id || '/recording.mp4', 'v/' || id || '/metadata.json', '{sha}', 1,
    jsonb_build_array(jsonb_build_object('kind', 'recording', 'key', 'v/' || id || '/recording.mp4',
        'sha256', '{sha}', 'size', 1, 'content_type', 'video/mp4')), now()
FROM (SELECT i, 'v' || i AS id FROM generate_series(1, {n}) AS i) AS numbered;
VACUUM ANALYZE recordings;
"""


def verify_archive(n: int, root: str) -> str:
    """A local archive of `n` intact recordings v1..vn (as VERIFY_FILL records them)."""
    import hashlib
    out = tempfile.mkdtemp(prefix="wa-bench-verify.", dir=root)
    sha = hashlib.sha256(b"x").hexdigest()
    for i in range(1, n + 1):
        rid = f"v{i}"
        d = os.path.join(out, "archive", "v", rid)
        os.makedirs(d)
        with open(os.path.join(d, "recording.mp4"), "wb") as f:
            f.write(b"x")
        meta = {"schema": "webex-archiver/metadata/v1", "recording_id": rid, "listing": {"id": rid},
                "files": [{"kind": "recording", "key": f"v/{rid}/recording.mp4", "sha256": sha, "size": 1,
                           "content_type": "video/mp4"}],
                "archived_at": "2026-01-01T00:00:00Z", "size_mismatch": False, "archiver_version": "bench"}
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump(meta, f)
    return out


def scenario_scale(opts, root: str, workdir: str) -> dict:
    """Issue 16's state layer at scale. (1) Postgres with 1,000,000 recordings and SQLite
    with 200,000, filled with the fixture the plan checks use (a realistic mix over five
    years and 50 sites): benches/scale.rs times claims, marking archived, listing pages of
    100, status's queries, the shared counts, a draining worker's question and verify's
    queries (p50/p99 each); then, on the same database, the commands as users run them:
    `status --json`, `verify --sample 100` (against an empty local directory: the
    database's share and the lookups; the hashing per byte is the throughput scenario's)
    and `/metrics` scrapes of a running `run`. (2) `verify` of everything, 20,000 and then
    100,000 intact recordings in a local directory: peak RSS must not grow with the rows."""
    sizes = {"postgres": 100_000, "sqlite": 20_000} if opts.quick else {"postgres": 1_000_000, "sqlite": 200_000}
    exe = bench_executable("scale")
    sim = Sim("scale", {"seed": 51, "recordings": 1, "span": "1h", "size": 1024}, workdir)
    out = {"params": {"rows": sizes}}
    runs = []
    try:
        for rep in range(opts.runs):
            run = {"run": rep + 1}
            for backend, rows in sizes.items():
                tmp = tempfile.mkdtemp(prefix="wa-bench-scale.", dir=root)
                db = PgDb() if backend == "postgres" else None
                url = db.url if db else f"sqlite://{tmp}/state.db"
                try:
                    res = subprocess.run([exe, "--url", url, "--rows", str(rows)], capture_output=True, text=True,
                                         timeout=7200)
                    if res.returncode != 0:
                        raise RuntimeError(f"benches/scale.rs on {backend}: {res.stderr.strip()[-1500:]}")
                    ops = json.loads(res.stdout.strip().splitlines()[-1])
                    env = archiver_env(sim, url, f"file://{tmp}/archive", os.path.join(tmp, "data"), None)
                    status = [run_archiver(["status", "--json"], env, workdir, f"scale-status-{backend}")["wall_s"]
                              for _ in range(5)]
                    sample = [run_archiver(["verify", "--sample", "100", "--json"], env, workdir,
                                           f"scale-verify-{backend}", ok_exits=(0, 1))["wall_s"] for _ in range(3)]
                    proc, port, _ = serve_metrics(sim, url, tmp, workdir, f"scale-run-{backend}",
                                                  {"WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY": "1"})
                    try:
                        # The first scrape after the start waits for nothing: the counts
                        # are taken beside it (server::keep_counts); time the steady state.
                        deadline = time.monotonic() + 120
                        while not (metric(scrape(port)[1], "webex_archiver_recordings_counted_timestamp_seconds")
                                   or 0) > 0:
                            if time.monotonic() > deadline:
                                raise RuntimeError(f"{backend}: /metrics never showed counted recordings")
                            time.sleep(0.2)
                        scrapes = []
                        for _ in range(100):
                            scrapes.append(scrape(port)[0])
                            time.sleep(0.05)
                    finally:
                        stop(proc)
                finally:
                    if db:
                        db.close()
                    shutil.rmtree(tmp, ignore_errors=True)
                run[backend] = {**ops, "status_json_s": median(status), "verify_sample_s": median(sample),
                                "metrics_scrape": quantiles_ms(scrapes)}
                o = run[backend]
                log(f"scale run {rep + 1}/{opts.runs} {backend} ({rows:,} recordings, filled in {o['fill_s']:.0f} s): "
                    f"claim p99 {o['claim']['p99_ms']:.1f} ms, archived p99 {o['finish']['p99_ms']:.1f} ms, "
                    f"page of {o['page_size']} p99 {o['page_new']['p99_ms']:.1f} ms, status --json "
                    f"{o['status_json_s']:.2f} s, /metrics p99 {o['metrics_scrape']['p99_ms']:.1f} ms, "
                    f"verify --sample 100 {o['verify_sample_s']:.2f} s")
            # verify of everything: memory at two sizes of an intact archive.
            for n in ((4_000, 20_000) if opts.quick else (20_000, 100_000)):
                db = PgDb()
                archive = verify_archive(n, root)
                try:
                    import hashlib
                    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBEX_ARCHIVER__")}
                    env.update({"WEBEX_ARCHIVER__DATABASE__URL": db.url, "WEBEX_ARCHIVER__LOG__FORMAT": "json",
                                "WEBEX_ARCHIVER__STORAGE__URL": f"file://{archive}/archive", "RUST_LOG": "warn"})
                    run_archiver(["migrate"], env, workdir, "scale-verify-migrate")
                    subprocess.run(["psql", db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                   input=VERIFY_FILL.replace("{n}", str(n)).replace(
                                       "{sha}", hashlib.sha256(b"x").hexdigest()),
                                   text=True, check=True, stdout=subprocess.DEVNULL,
                                   env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))
                    res = run_archiver(["verify", "--json"], env, workdir, f"scale-verify-all-{n}")
                    with open(res["stdout"]) as f:
                        said = json.load(f)
                    if said.get("checked") != n or said.get("ok") != n or said.get("unclaimed"):
                        raise RuntimeError(f"verify of {n} intact recordings said: checked {said.get('checked')}, "
                                           f"ok {said.get('ok')}, unclaimed {len(said.get('unclaimed') or [])}")
                    # A sample of an archive whose objects are there: the lookups and the
                    # reads and hashes of 100 recordings and their metadata.json.
                    sample_intact = []
                    for _ in range(3):
                        r = run_archiver(["verify", "--sample", "100", "--json"], env, workdir,
                                         f"scale-verify-sample-{n}")
                        with open(r["stdout"]) as f:
                            said = json.load(f)
                        if said.get("checked") != 100 or said.get("ok") != 100:
                            raise RuntimeError(f"verify --sample 100 of {n} intact recordings said: checked "
                                               f"{said.get('checked')}, ok {said.get('ok')}")
                        sample_intact.append(r["wall_s"])
                finally:
                    db.close()
                    shutil.rmtree(archive, ignore_errors=True)
                run[f"verify_all_{n}"] = {"s": res["wall_s"], "max_rss_mib": res["max_rss_kib"] / 1024,
                                          "sample_s": median(sample_intact)}
            small, big = sorted((k for k in run if k.startswith("verify_all_")), key=lambda k: int(k.rsplit("_", 1)[1]))
            run["verify_all_rss_growth_mib"] = run[big]["max_rss_mib"] - run[small]["max_rss_mib"]
            log(f"scale run {rep + 1}/{opts.runs}: verify of everything: {run[small]['max_rss_mib']:.0f} MiB at "
                f"{small.rsplit('_', 1)[1]} recordings, {run[big]['max_rss_mib']:.0f} MiB at {big.rsplit('_', 1)[1]}")
            runs.append(run)
    finally:
        sim.close()
    for backend in sizes:
        col = lambda f: median([f(r[backend]) for r in runs])
        for op in ("claim", "finish", "page_new", "page_relisted", "gauges", "next_work", "refresh_counts",
                   "verify_sample_query", "claimed_prefixes_1000", "status"):
            for q in ("p50_ms", "p99_ms"):
                if runs and runs[0][backend].get(op):
                    out[f"scale_{backend}_{op}_{q}"] = col(lambda r: r[op][q])
        out[f"scale_{backend}_status_json_s"] = col(lambda r: r["status_json_s"])
        out[f"scale_{backend}_verify_sample_s"] = col(lambda r: r["verify_sample_s"])
        out[f"scale_{backend}_metrics_p50_ms"] = col(lambda r: r["metrics_scrape"]["p50_ms"])
        out[f"scale_{backend}_metrics_p99_ms"] = col(lambda r: r["metrics_scrape"]["p99_ms"])
        out[f"scale_{backend}_fill_s"] = col(lambda r: r["fill_s"])
        # Growth of a real recording's life: discovered (listing item, event), then
        # claimed and archived (events, files), as measured on the filled database.
        out[f"scale_{backend}_db_mib_per_million"] = col(
            lambda r: (r["db_bytes_per_discovered"] + r["db_bytes_per_archived"]) * 1e6 / MIB)
        out[f"scale_{backend}_db_mib_filled"] = col(lambda r: r["db_bytes_filled"] / MIB)
    sizes_v = sorted(int(k.rsplit("_", 1)[1]) for k in runs[0] if re.fullmatch(r"verify_all_\d+", k))
    for n in sizes_v:
        out[f"scale_verify_all_rss_mib_{n}"] = median([r[f"verify_all_{n}"]["max_rss_mib"] for r in runs])
        out[f"scale_verify_all_s_{n}"] = median([r[f"verify_all_{n}"]["s"] for r in runs])
        out[f"scale_verify_sample_intact_s_{n}"] = median([r[f"verify_all_{n}"]["sample_s"] for r in runs])
    out["scale_verify_all_rss_growth_mib"] = median([r["verify_all_rss_growth_mib"] for r in runs])
    out["scale_runs"] = runs
    return out


def scenario_soak(opts, root: str, workdir: str) -> dict:
    """Issue 16's months of uptime, in 30 minutes: `run` against a simulator with faults,
    a new recording published every 3 s, access tokens that live one minute (refreshed
    through OAuth, refresh tokens rotated). RSS, open file descriptors and tokio tasks of
    the process are sampled every 30 s; start is the first sample after the initial
    backlog is archived, end the last one."""
    minutes = 3 if opts.quick else 30
    scenario = {"seed": 61, "recordings": 200, "span": "1d", "size_min": 16 * 1024, "size_max": 512 * 1024,
                "format_weights": {"MP4": 1}, "prevent_downloading_fraction": 0.02, "deleted_fraction": 0.0,
                "access_token_lifetime": "1m", "rotate_refresh_tokens": True,
                "faults": [{"kind": "api_error", "status": 503, "probability": 0.02},
                           {"kind": "locked", "retry_after": 2, "endpoint": "details", "probability": 0.01},
                           {"kind": "reset", "after_bytes": 8192, "probability": 0.03},
                           {"kind": "stall", "after_bytes": 4096, "duration": "3s", "probability": 0.01},
                           {"kind": "expired_link", "probability": 0.02}]}
    sim = Sim("soak", scenario, workdir)
    tmp = tempfile.mkdtemp(prefix="wa-bench-soak.", dir=root)
    db = PgDb()
    stop_publishing = threading.Event()
    published = [0]

    def publish():
        while not stop_publishing.wait(3.0):
            now = dt.datetime.now(dt.timezone.utc).isoformat()
            try:
                http_json(f"{sim.origin}/_sim/recordings", method="POST", body={"create_time": now}, timeout=30)
                published[0] += 1
            except Exception as e:  # a missed publication is only one fewer recording
                log(f"soak: publishing failed: {e}")

    samples = []
    publisher = threading.Thread(target=publish, daemon=True)
    try:
        extra = {"WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN": "",
                 "WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID": sim.banner["client_id"],
                 "WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_SECRET": sim.banner["client_secret"],
                 "WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_TOKEN": sim.banner["refresh_token"],
                 "WEBEX_ARCHIVER__SYNC__POLL_INTERVAL": "10s", "WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY": "2"}
        proc, port, logf = serve_metrics(sim, db.url, tmp, workdir, "soak-run", extra)
        publisher.start()
        t0 = time.monotonic()
        end = t0 + minutes * 60
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"soak: `run` exited {proc.returncode}; see {logf}")
            _, body = scrape(port)
            with open(f"/proc/{proc.pid}/status") as f:
                rss_kib = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
            samples.append({
                "t_s": time.monotonic() - t0, "rss_mib": rss_kib / 1024,
                "fds": len(os.listdir(f"/proc/{proc.pid}/fd")),
                "tasks": metric(body, "webex_archiver_runtime_tasks"),
                "archived": metric(body, 'webex_archiver_recordings{state="archived"}'),
                "pending": metric(body, 'webex_archiver_recordings{state="pending"}'),
                "token_refreshes": metric(body, "webex_archiver_token_refreshes_total"),
                "cpu_s": proc_cpu_s(proc.pid),
            })
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
        stop_publishing.set()
        stop(proc)
        counters = sim.counters()
    finally:
        stop_publishing.set()
        sim.close()
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
    # Start: the first sample after the initial backlog (200 recordings) was archived.
    first = next((s for s in samples if (s["archived"] or 0) >= 150 and s["t_s"] >= 60), samples[0])
    last = samples[-1]
    growth = lambda k: (last[k] - first[k]) / first[k] if first[k] else None
    log(f"soak: {minutes} min, {published[0]} published, {last['archived']:.0f} archived; RSS "
        f"{first['rss_mib']:.1f} -> {last['rss_mib']:.1f} MiB, fds {first['fds']} -> {last['fds']}, tasks "
        f"{first['tasks']:.0f} -> {last['tasks']:.0f}, {last['token_refreshes']:.0f} token refreshes")
    return {
        "params": {"minutes": minutes, "publish_every_s": 3, "access_token_lifetime": "1m",
                   "faults": scenario["faults"]},
        "soak_minutes": minutes,
        "soak_published": published[0],
        "soak_archived": last["archived"],
        "soak_token_refreshes": last["token_refreshes"],
        "soak_rss_mib_start": first["rss_mib"], "soak_rss_mib_end": last["rss_mib"],
        "soak_rss_growth": growth("rss_mib"),
        "soak_fds_start": first["fds"], "soak_fds_end": last["fds"], "soak_fds_growth": growth("fds"),
        "soak_tasks_start": first["tasks"], "soak_tasks_end": last["tasks"], "soak_tasks_growth": growth("tasks"),
        "soak_rss_mib_max": max(s["rss_mib"] for s in samples),
        "soak_cpu_s": last["cpu_s"],
        "soak_sim_rate_limited": counters.get("rate_limited"),
        "soak_token_leaks": counters.get("token_leaks"),
        "soak_samples": samples,
    }


# --------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])

    def git(*a):
        r = subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True)
        return r.stdout.strip()

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "src", "migrations", "Cargo.toml", "Cargo.lock"))
    def version(*cmd):
        try:
            return subprocess.run(list(cmd), capture_output=True, text=True).stdout.strip()
        except FileNotFoundError:  # `--only report` needs neither rclone nor Garage
            return "not installed"

    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": commit + (" (sources modified)" if dirty else ""), "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "rclone": (version("rclone", "version").splitlines() or ["?"])[0],
        "garage": version(GARAGE, "--version"),
    }


def fmt(v, digits=None):
    if v is None:
        return "—"
    if isinstance(v, float):
        if digits is None:
            digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def met(key, v):
    if key not in TARGETS or v is None:
        return ""
    op, thr, _ = TARGETS[key]
    return "met" if (v >= thr if op == ">=" else v <= thr) else "**not met**"


ROWS = [
    # key, label, unit, per-run source (scenario, run key)
    ("throughput_mb_s", "Throughput, ours (`sync`, concurrency 4; payload unsigned, as over https)", "MB/s",
     ("throughput", "ours_mb_s")),
    ("throughput_signed_mb_s", "Throughput, ours with signed payloads (the default over plain http)", "MB/s",
     ("throughput", "ours_signed_mb_s")),
    ("source_limit_mb_s", "Source limit (curl, 4 at a time)", "MB/s", ("throughput", "source_mb_s")),
    ("sink_limit_mb_s", "Sink limit (`rclone copy --transfers 4` from local files)", "MB/s", ("throughput", "sink_mb_s")),
    ("rclone_mb_s", "Peer (`rclone copyurl`, 4 at a time)", "MB/s", ("throughput", "rclone_mb_s")),
    ("throughput_vs_rclone", "Ours / rclone", "×", ("throughput", "throughput_vs_rclone")),
    ("throughput_vs_limit", "Ours / min(source, sink)", "×", ("throughput", "throughput_vs_limit")),
    ("throughput_signed_vs_rclone", "Ours with signed payloads / rclone", "×", None),
    ("peak_rss_mib_2gib", "Peak RSS, one 2 GiB recording", "MiB", ("memory", "big_rss_mib")),
    ("peak_rss_mib_64mib", "Peak RSS, one 64 MiB recording", "MiB", ("memory", "small_rss_mib")),
    ("peak_rss_growth_mib", "Peak RSS growth, 2 GiB − 64 MiB", "MiB", ("memory", "growth_mib")),
    ("throughput_peak_rss_mib", "Peak RSS during the throughput runs", "MiB", ("throughput", "ours_max_rss_mib")),
    ("hostile_storm_requests", "Requests sent into a 15 s storm of 429 `Retry-After: 0`", "requests",
     ("hostile", "storm_requests")),
    ("hostile_peak_rss_mib_160mib_page", "Peak RSS of `sync` meeting one 160 MiB listing answer", "MiB",
     ("hostile", "page_rss_mib")),
    ("hostile_peak_rss_mib_without_page", "… the same `sync` without it", "MiB", ("hostile", "plain_rss_mib")),
    ("discovery_per_s_postgres", "Discovery into Postgres", "recordings/s", ("discovery", "postgres_per_s")),
    ("discovery_per_s_sqlite", "Discovery into SQLite", "recordings/s", ("discovery", "sqlite_per_s")),
    ("discovery_per_s_postgres_sslmode_disable", "Discovery into Postgres, `?sslmode=disable` (diagnostic)",
     "recordings/s", ("discovery", "postgres_nossl_per_s")),
    ("discovery_api_requests", "API requests of one discovery pass", "requests", None),
    ("cpu_s_per_gib", "CPU (user+sys) per GiB archived", "s/GiB", ("throughput", "cpu_s_per_gib")),
    ("api_calls_per_recording", "API calls per recording archived (no downloads)", "calls", ("throughput", "api_calls_per_recording")),
    ("details_calls_per_recording", "… of which details calls per recording", "calls", ("throughput", "details_per_recording")),
    ("api_calls_per_recording_at_scale", "API calls per recording at the discovery scenario's scale (details + listing share)",
     "calls", None),
    ("report_json_s", "`report --format json` of a year of 1,000,000 recordings (Postgres)", "s", ("report", "json_s")),
    ("report_html_s", "`report --format html` of the same year", "s", ("report", "html_s")),
    ("report_rows", "… recordings in that year", "recordings", None),
    ("report_json_max_rss_mib", "Peak RSS of the JSON report", "MiB", ("report", "json_max_rss_mib")),
    ("report_html_max_rss_mib", "Peak RSS of the HTML report", "MiB", ("report", "html_max_rss_mib")),
    ("report_html_mb", "Size of the HTML page", "MB", None),
    ("sites_discovery_per_s_postgres", "Discovery of 50 sites × 2,000 recordings into Postgres (`sync --discover-only`)",
     "recordings/s", ("sites", "discovery_per_s")),
    ("sites_max_listings_in_flight", "… sites listed at once (simulator's count; `sync.site_concurrency` 4)", "sites",
     ("sites", "discover_max_listings_in_flight")),
    ("sites_api_calls_per_recording", "API calls per recording archived, 50 sites, first pass (details included)",
     "calls", ("sites", "api_calls_per_recording")),
    ("sites_details_calls_per_recording", "… of which details calls", "calls", ("sites", "details_per_recording")),
    ("sites_listing_calls_per_recording", "… of which listings (recordings and recycle bin)", "calls",
     ("sites", "listings_per_recording")),
    ("sites_archive_per_s", "Archiving of those 100,000 recordings of 16 KiB (`sync`, local directory)",
     "recordings/s", ("sites", "archive_per_s")),
    ("rclone_cpu_s_per_gib", "CPU per GiB, `rclone copyurl` (same bytes, same run; hashes nothing)", "s/GiB",
     ("throughput", "rclone_cpu_s_per_gib")),
    ("sha256_cpu_s_per_gib", "CPU per GiB of SHA-256 alone (`sha2`, as the archiver hashes)", "s/GiB",
     ("throughput", "sha256_cpu_s_per_gib")),
    ("cpu_s_per_gib_without_hash", "CPU per GiB, ours without the hash (ours − SHA-256 alone)", "s/GiB",
     ("throughput", "cpu_s_per_gib_without_hash")),
] + [
    row for _backend, _rows in (("postgres", "1,000,000"), ("sqlite", "200,000")) for row in [
        (f"scale_{_backend}_claim_p99_ms", f"{_backend.title()}, {_rows} recordings: one claim, p99", "ms", None),
        (f"scale_{_backend}_claim_p50_ms", "… one claim, p50", "ms", None),
        (f"scale_{_backend}_finish_p99_ms", "… marking one recording archived, p99", "ms", None),
        (f"scale_{_backend}_finish_p50_ms", "… marking one recording archived, p50", "ms", None),
        (f"scale_{_backend}_page_new_p99_ms", "… recording a listing page of 100 new recordings, p99", "ms", None),
        (f"scale_{_backend}_page_new_p50_ms", "… recording a listing page of 100 new recordings, p50", "ms", None),
        (f"scale_{_backend}_page_relisted_p99_ms", "… the same page listed again, p99", "ms", None),
        (f"scale_{_backend}_status_json_s", "… `status --json` (the whole command)", "s", None),
        (f"scale_{_backend}_metrics_p99_ms", "… one `/metrics` scrape of a running `run`, p99", "ms", None),
        (f"scale_{_backend}_metrics_p50_ms", "… one `/metrics` scrape, p50", "ms", None),
        (f"scale_{_backend}_refresh_counts_p50_ms", "… the shared count /metrics reads (taken at most every few s)",
         "ms", None),
        (f"scale_{_backend}_verify_sample_s", "… `verify --sample 100` (the whole command; objects absent)", "s",
         None),
        (f"scale_{_backend}_next_work_p99_ms", "… a draining worker's question, p99", "ms", None),
        (f"scale_{_backend}_fill_s", "… time to fill the database (fixture SQL)", "s", None),
        (f"scale_{_backend}_db_mib_filled", "… size of the filled database (fixture rows: short listings)", "MiB",
         None),
        (f"scale_{_backend}_db_mib_per_million", "… growth per million recordings discovered and archived (real "
         "listing items and events)", "MiB", None),
    ]
] + [
    ("scale_verify_all_rss_mib_20000", "`verify` of everything, 20,000 intact recordings: peak RSS", "MiB", None),
    ("scale_verify_all_rss_mib_100000", "`verify` of everything, 100,000 intact recordings: peak RSS", "MiB", None),
    ("scale_verify_all_rss_growth_mib", "… growth of peak RSS for 5× the rows", "MiB", None),
    ("scale_verify_all_s_100000", "… wall time at 100,000 recordings", "s", None),
    ("scale_verify_sample_intact_s_100000", "`verify --sample 100` of those 100,000 intact recordings (objects read "
     "and hashed, local directory)", "s", None),
    ("soak_rss_mib_start", "Soak (`run`, 30 min, faults, a publication every 3 s, tokens of 1 min): RSS at start",
     "MiB", None),
    ("soak_rss_mib_end", "… RSS at the end", "MiB", None),
    ("soak_rss_growth", "… RSS growth", "fraction", None),
    ("soak_fds_start", "… open file descriptors at start", "fds", None),
    ("soak_fds_end", "… open file descriptors at the end", "fds", None),
    ("soak_fds_growth", "… file descriptor growth", "fraction", None),
    ("soak_tasks_start", "… tokio tasks at start", "tasks", None),
    ("soak_tasks_end", "… tokio tasks at the end", "tasks", None),
    ("soak_tasks_growth", "… task growth", "fraction", None),
    ("soak_archived", "… recordings archived by the end", "recordings", None),
    ("soak_token_refreshes", "… access-token refreshes", "refreshes", None),
]


def markdown(results: dict) -> str:
    figures = results["figures"]
    m = results["machine"]
    lines = [
        f"# webex-archiver benchmark ({m['date']})",
        "",
        f"Median of {results['runs']} runs{' (--quick sizes)' if results['quick'] else ''}; ratios are medians "
        "of per-run ratios. Per-run values in run order.",
        "",
        "| Metric | Median | Unit | Per run | Target | Met |",
        "|---|---:|---|---|---|---|",
    ]
    for key, label, unit, src in ROWS:
        if key not in figures:
            continue
        v = figures[key]
        per = ""
        if src:
            runs = results["scenarios"].get(src[0], {}).get(f"{src[0]}_runs", [])
            per = ", ".join(fmt(r.get(src[1])) for r in runs)
        target = TARGETS[key][2] if key in TARGETS else ""
        lines.append(f"| {label} | {fmt(v)} | {unit} | {per} | {target} | {met(key, v)} |")
    lines += ["", "Elapsed: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["elapsed_s"].items()), ""]
    if results.get("errors"):
        lines += ["Errors:", ""] + [f"- {k}: {v.splitlines()[0]}" for k, v in results["errors"].items()] + [""]
    tp = results["scenarios"].get("throughput")
    if tp:
        p = tp["params"]
        lines += [f"Throughput: {p['recordings']} MP4 recordings × {p['size_bytes'] / MIB:.0f} MiB "
                  f"({p['total_bytes'] / MB:,.0f} MB) from the simulator into a single-node Garage on the same "
                  f"machine, 4 transfers at a time; a fresh Garage for every tool in every run (Garage deduplicates "
                  f"blocks by content), a fresh Postgres database for every run of ours, tool order rotated.",
                  ""]
    if tp and tp.get("cpu_by_tool"):
        names = {"ours": "ours (`sync`)", "ours_signed": "ours, signed payloads", "source": "source (curl → /dev/null)",
                 "sink": "sink (`rclone copy` local → Garage)", "peer": "peer (`rclone copyurl`)"}
        lines += ["Where the CPU went during each throughput measurement (medians; the tool, Garage and the "
                  "simulator share the machine's cores):", "",
                  "| Tool | MB/s | tool CPU s | Garage CPU s | simulator CPU s | machine busy |",
                  "|---|---:|---:|---:|---:|---:|"]
        for tool, c in tp["cpu_by_tool"].items():
            busy = "—" if c["machine_busy"] is None else f"{c['machine_busy']:.0%}"
            lines.append(f"| {names[tool]} | {fmt(c['mb_s'])} | {fmt(c['tool_cpu_s'], 1)} | "
                         f"{fmt(c['garage_cpu_s'], 1)} | {fmt(c['sim_cpu_s'], 1)} | {busy} |")
        lines += ["", "Lower of source and sink limit, per run: " + ", ".join(tp["bottleneck_by_run"]) + ".", ""]
        sink, faster = figures.get("sink_limit_mb_s"), []
        for key, name in (("rclone_mb_s", "`rclone copyurl`"), ("throughput_mb_s", "ours")):
            if sink is not None and figures.get(key) is not None and figures[key] > sink:
                faster.append(f"{name} ({fmt(figures[key])} MB/s)")
        if faster:
            lines += [f"Note: the sink limit ({fmt(sink)} MB/s) is below what " + " and ".join(faster)
                      + " wrote into the same kind of Garage, so on this machine it is not an upper bound: it "
                      "measures `rclone copy`'s own cost (see its CPU above) as much as the sink's. "
                      "`throughput_vs_limit` is reported as defined, but read it with this in mind.", ""]
    st = results["scenarios"].get("sites")
    if st and st.get("sites_api_calls"):
        p, calls, by = st["params"], st["sites_api_calls"], st.get("sites_listings_by_status") or {}
        lines += [f"Fifty sites: {p['sites']} sites of {p['per_site_min']:,} to {p['per_site_max']:,} recordings "
                  f"({p['recordings']:,} in all, produced over the last {p['span']}), `sync.since` {p['since']}, "
                  f"everything else the defaults. API calls of the last `sync`: {calls['details']:,} details, "
                  f"{calls['admin_list'] + calls['list']:,} listings ("
                  + ", ".join(f"{v:,} {k}" for k, v in sorted(by.items())) + f"), {calls['sites']} site list, "
                  f"{calls['token']} token; {calls['total']:,} in all.", ""]
    lines += [
        "Machine: " + f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"commit {m['git_commit']}; {m['rclone']}; {m['garage']}.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    opts = parse_args(sys.argv[1:])
    if opts.check_args:
        return 0
    global BIN, GARAGE, REPO, PG_ADMIN
    REPO = os.environ.get("WA_BENCH_REPO") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    BIN = os.environ.get("WA_BENCH_BIN") or os.path.join(REPO, "target/release/webex-archiver")
    GARAGE = os.environ.get("WA_BENCH_GARAGE") or shutil.which("garage") or "garage"
    PG_ADMIN = os.environ.get("WA_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    for tool in (BIN, GARAGE) if opts.only not in WITHOUT_S3 else (BIN,):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"bench: {tool} is missing (run scripts/bench, which builds and installs it)")
    out_dir = os.getcwd()
    root = os.environ.get("WA_BENCH_TMP") or tempfile.gettempdir()
    check_disk(root, MIN_FREE_GIB)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wanted = [opts.only] if opts.only else ["throughput", "memory", "discovery", "hostile", "report", "sites",
                                            "scale", "soak"]
    if "efficiency" in wanted:
        wanted = ["throughput"]
    workdir = tempfile.mkdtemp(prefix="wa-bench.", dir=root)
    results = {"runs": opts.runs, "quick": opts.quick, "machine": machine(), "elapsed_s": {}, "errors": {},
               "scenarios": {}, "figures": {}}
    started = time.monotonic()
    try:
        for name in wanted:
            fn = {"throughput": scenario_throughput, "memory": scenario_memory, "discovery": scenario_discovery,
                  "hostile": scenario_hostile, "report": scenario_report, "sites": scenario_sites,
                  "scale": scenario_scale, "soak": scenario_soak}[name]
            log(f"scenario {name}: {opts.runs} run(s)")
            t0 = time.monotonic()
            try:
                results["scenarios"][name] = fn(opts, root, workdir)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # keep the other scenarios' figures
                results["errors"][name] = f"{type(e).__name__}: {e}"
                log(f"scenario {name} FAILED: {e}")
            results["elapsed_s"][name] = time.monotonic() - t0
            log(f"scenario {name}: {results['elapsed_s'][name]:.0f} s")
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"]["total"] = time.monotonic() - started
    for sc in results["scenarios"].values():
        for k, v in sc.items():
            if not k.endswith("_runs") and k not in ("params", "cpu_by_tool", "bottleneck_by_run", "sites_api_calls",
                                                        "sites_listings_by_status", "soak_samples"):
                results["figures"][k] = v
    f = results["figures"]
    if f.get("details_calls_per_recording") is not None and f.get("discovery_api_requests") is not None:
        f["api_calls_per_recording_at_scale"] = (f["details_calls_per_recording"] + f["discovery_api_requests"]
                                                 / results["scenarios"]["discovery"]["params"]["recordings"])
    if "throughput" in results["scenarios"]:
        runs = results["scenarios"]["throughput"]["throughput_runs"]
        results["throughput_runs"] = runs
        results["noise"] = {k: spread([r[k] for r in runs])
                            for k in ("ours_mb_s", "source_mb_s", "sink_mb_s", "rclone_mb_s")}
    results["targets"] = {k: {"target": t[2], "met": met(k, results["figures"].get(k)) == "met"}
                          for k, t in TARGETS.items() if results["figures"].get(k) is not None}
    with open(os.path.join(out_dir, "bench-results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
        f.write("\n")
    md = markdown(results)
    with open(os.path.join(out_dir, "bench-results.md"), "w") as f:
        f.write(md)
    print(md)
    log(f"total {results['elapsed_s']['total']:.0f} s; wrote {out_dir}/bench-results.json and bench-results.md")
    return 1 if results["errors"] else 0


BIN = GARAGE = REPO = PG_ADMIN = ""

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopped every process it started")
        stop_all()
        sys.exit(130)
