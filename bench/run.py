"""spendgate benchmark: the mock provider (core 1) vs the full-featured gateway in front of
it (core 0) and vs the floor (bench/floor.py, a feature-less proxy on the same stack, also
on core 0), driven by wrk (core 1). See bench/README.md.

    python bench/run.py [--quick] [--requests N] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import report
from fixture import GATEWAY_KEY, child_env, smoke, write_config
from loadgen import LoadGen
from procs import (
    Procs,
    comm,
    core_busy_ms,
    cpu_ms,
    exits_cleanly,
    free_port,
    http,
    python,
    rss_mb,
    wait_http,
)

REPO = Path(__file__).resolve().parent.parent
FLOOR = Path(__file__).resolve().parent / "floor.py"
GATEWAY_CORE, LOAD_CORE = 0, 1
PROFILES = {  # scenario_s, warmup_s (per target and mode), soak slice, soak time cap, soak requests
    "full": {
        "scenario_s": 10,
        "warmup_s": 3,
        "slice_s": 15,
        "soak_cap_s": 420,
        "requests": 100_000,
    },
    "quick": {"scenario_s": 3, "warmup_s": 2, "slice_s": 3, "soak_cap_s": 90, "requests": 10_000},
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, profile: dict[str, Any], procs: Procs) -> None:
        self.args, self.profile, self.procs = args, profile, procs
        self.tmp = Path(tempfile.mkdtemp(prefix="spendgate-bench-"))
        self.gateway_requests = 0
        self.errors_seen = 0
        self.cut_allowance = 0  # streams the load generator may cut when it stops: conns per run
        self.redis: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        mock_port, gw_port, floor_port = free_port(), free_port(), free_port()
        self.mock_url, self.gw_url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{gw_port}"
        self.floor_url = f"http://127.0.0.1:{floor_port}"
        self.mock_log, self.gw_log = self.tmp / "mock.log", self.tmp / "gateway.log"
        self.floor_log = self.tmp / "floor.log"
        mock_argv = ["-m", "gateway", "mock-provider", "--port", str(mock_port)]
        self.mock = self.spawn("mock", LOAD_CORE, self.mock_log, mock_argv)
        store = self.start_store()
        config = str(write_config(self.tmp, mock_port, store))
        gw_argv = ["-m", "gateway", "serve", "--config", config, "--port", str(gw_port)]
        self.gw = self.spawn(
            "gateway",
            GATEWAY_CORE,
            self.gw_log,
            [*gw_argv, "--workers", "1"],
            stdout=self.tmp / "gateway.out",
        )
        floor_argv = [str(FLOOR), "--port", str(floor_port), "--upstream", self.mock_url]
        self.floor = self.spawn("floor", GATEWAY_CORE, self.floor_log, floor_argv)
        waited = wait_http(f"{self.mock_url}/_mock/health", self.mock, log=self.mock_log)
        log(f"mock provider pid {self.mock.pid} up on {self.mock_url} after {waited:.2f}s")
        waited = wait_http(f"{self.floor_url}/", self.floor, log=self.floor_log)
        log(f"floor proxy pid {self.floor.pid} up on {self.floor_url} after {waited:.2f}s")
        waited = wait_http(f"{self.gw_url}/readyz", self.gw, log=self.gw_log)
        log(
            f"gateway pid {self.gw.pid} ({comm(self.gw.pid)}) up on {self.gw_url} "
            f"after {waited:.2f}s; store {store}; temp dir {self.tmp}"
        )
        self.urls = {"mock": self.mock_url, "floor": self.floor_url, "gateway": self.gw_url}
        self.pids = {"mock": self.mock.pid, "floor": self.floor.pid, "gateway": self.gw.pid}
        for url in self.urls.values():
            smoke(url, GATEWAY_KEY)
        self.gateway_requests += 2

    def spawn(
        self, name: str, core: int, log_path: Path, argv: list[str], stdout: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """``python *argv`` pinned to ``core``, stderr to ``log_path`` (stdout too, or to
        ``stdout``), in the repo with the benchmark's environment."""
        with contextlib.ExitStack() as files:
            err = files.enter_context(log_path.open("wb"))
            out = files.enter_context(stdout.open("wb")) if stdout else err
            return self.procs.start(
                name,
                [python(), *argv],
                core=core,
                env=child_env(),
                cwd=REPO,
                stdout=out,
                stderr=err,
            )

    def start_store(self) -> str:
        """The store URL: a fresh SQLite file in the temp dir, or a fresh redis-server of our
        own (free port, no persistence) pinned to the load core."""
        if self.args.store == "sqlite":
            return f"sqlite:///{self.tmp / 'state.db'}{self.args.store_options}"
        port = free_port()
        self.redis = self.procs.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            core=LOAD_CORE,
        )
        for _ in range(200):
            if self.redis.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.redis.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        log(f"redis-server pid {self.redis.pid} on port {port} (core {LOAD_CORE})")
        return f"redis://127.0.0.1:{port}/0"

    def load(self, target: str, conns: int, seconds: int, mode: str) -> dict[str, Any]:
        url, pid = self.urls[target], self.pids[target]
        redis = self.redis.pid if self.redis is not None and target == "gateway" else None
        cpu0, store0 = cpu_ms(pid), cpu_ms(redis) if redis else 0.0
        core0 = core_busy_ms(GATEWAY_CORE)
        res = self.loadgen.run(f"{url}/v1/chat/completions", conns, seconds, mode)
        cpu = cpu_ms(pid) - cpu0
        core = core_busy_ms(GATEWAY_CORE) - core0 - (cpu if target != "mock" else 0.0)
        wall_ms = res.duration_s * 1000 or 1.0
        if target == "gateway":
            self.gateway_requests += res.requests
            self.cut_allowance += conns
        self.errors_seen += res.error_count
        row = {
            "mode": {"0": "json", "1": "sse"}.get(mode, mode),
            "target": target,
            "conns": conns,
            **res.to_json(),
            "cpu_ms": round(cpu, 1),
            "cpu_ms_per_req": round(cpu / res.requests, 4) if res.requests else 0.0,
            "cpu_util": round(cpu / (res.duration_s * 1000), 3) if res.duration_s else 0.0,
            # core 0 busy with other processes (not the gateway or floor measured): noise
            "core0_other_util": round(max(0.0, core) / wall_ms, 3),
        }
        if redis and res.requests:  # the store's own CPU, outside the gateway process
            row["redis_cpu_ms_per_req"] = round((cpu_ms(redis) - store0) / res.requests, 4)
        flag = "" if not res.error_count else f"  !!! {res.error_count} ERRORS {res.errors}"
        log(
            f"{target:>7} {row['mode']:>4} c={conns:<2} {res.rps:8.0f} req/s  p50 "
            f"{res.p50_ms:7.3f} ms  p99 {res.p99_ms:7.3f} ms  cpu {row['cpu_ms_per_req']:.3f} "
            f"ms/req ({row['cpu_util']:.0%} of a core; others on core 0 "
            f"{row['core0_other_util']:.0%}){flag}"
        )
        return row

    def run(self) -> dict[str, Any]:
        p = self.profile
        self.loadgen = LoadGen(
            self.procs,
            LOAD_CORE,
            GATEWAY_KEY,
            uuid.uuid4().hex[:8],
            LoadGen.choose(self.args.loadgen),
        )
        if self.loadgen.kind != "wrk":
            log(
                "NOTE: wrk not found -- using the Python raw-socket fallback (bench/pyload.py); "
                "it may not saturate the targets"
            )
        self.start()
        log("warmup")
        for target in report.TARGET_NAMES:
            for mode in ("0", "1"):
                self.load(target, 16, p["warmup_s"], mode)
        http("POST", f"{self.mock_url}/_mock/reset", b"")
        rss = {"after_warmup": rss_mb(self.gw.pid)}
        floor_rss = {"after_warmup": rss_mb(self.floor.pid)}
        scenarios = [
            self.load(target, conns, p["scenario_s"], mode)
            for mode in ("0", "1")
            for conns in report.CONNS
            for target in report.TARGET_NAMES
        ]
        rss["after_scenarios"] = rss_mb(self.gw.pid)
        floor_rss["after_scenarios"] = rss_mb(self.floor.pid)
        floor_rss["max"] = max(floor_rss.values())
        soak = self.soak()
        rss["after_soak"] = rss_mb(self.gw.pid)
        samples = [s["rss_mb"] for s in soak["samples"]]
        rss["max"] = max([*rss.values(), *samples])
        rss["growth"] = round(rss["after_soak"] - rss["after_warmup"], 2)
        rss["soak_growth"] = round(rss["after_soak"] - rss["after_scenarios"], 2)
        derived = report.derive(scenarios, rss, floor_rss)
        access = report.scan_access_log(self.gw_log, self.cut_allowance)
        self.errors_seen += access["bad_access_lines"] + access["excess_disconnects"]
        return {
            "meta": self.meta(),
            "scenarios": scenarios,
            "soak": soak,
            "gateway_requests_total": self.gateway_requests,
            "gateway_log": access,
            "store": self.args.store,
            "store_bytes": sum(f.stat().st_size for f in self.tmp.glob("state.db*")),
            "derived": derived,
            "targets": report.targets(derived),
            "total_errors": self.errors_seen,
        }

    def soak(self) -> dict[str, Any]:
        """Mixed JSON/SSE at 16 clients, in fixed-length slices until ``--requests`` went
        through the gateway (or the time cap); RSS sampled after every slice."""
        p, goal = self.profile, self.args.requests
        done = errors = 0
        seconds = 0.0
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        log(f"soak: {goal} requests through the gateway (cap {p['soak_cap_s']}s)")
        while done < goal and time.monotonic() - started < p["soak_cap_s"]:
            rate = done / seconds if seconds else 0.0
            left = (goal - done) / rate if rate else p["slice_s"]
            slice_s = max(1, min(p["slice_s"], round(left + 0.5)))
            res = self.loadgen.run(f"{self.gw_url}/v1/chat/completions", 16, slice_s, "mix")
            done += res.requests
            self.cut_allowance += 16
            errors += res.error_count
            seconds += res.duration_s
            samples.append({"requests": done, "rss_mb": round(rss_mb(self.gw.pid), 2)})
            log(
                f"   soak {done:>7}/{goal} requests, {res.rps:6.0f} req/s, "
                f"RSS {samples[-1]['rss_mb']:.1f} MB, errors {errors}"
            )
        self.gateway_requests += done
        self.errors_seen += errors
        capped = done < goal
        if capped:
            log(f"soak stopped at the {p['soak_cap_s']}s cap after {done} requests")
        return {
            "requests": done,
            "goal": goal,
            "capped": capped,
            "duration_s": round(seconds, 1),
            "rps": round(done / seconds, 1) if seconds else 0.0,
            "errors": errors,
            "samples": samples,
        }

    def meta(self) -> dict[str, Any]:
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "?",
        )
        git = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": self.args.quick,
            "git": git or None,
            "cpu": cpu,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "loadgen": self.loadgen.version,
            "scenario_s": self.profile["scenario_s"],
            "warmup_s": self.profile["warmup_s"],
            "requests_goal": self.args.requests,
            "gateway_core": GATEWAY_CORE,
            "load_core": LOAD_CORE,
            "gateway_pid": self.gw.pid,
            "mock_pid": self.mock.pid,
            "floor_pid": self.floor.pid,
            "loadavg_at_end": os.getloadavg(),
            "store": self.args.store,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short scenarios, ~10k soak")
    parser.add_argument(
        "--requests",
        type=int,
        help="soak requests through the gateway (default 100000, --quick 10000)",
    )
    parser.add_argument("--duration", type=int, help="seconds per scenario (default 10, quick 3)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "latest.json"))
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--store",
        choices=("sqlite", "redis"),
        default="sqlite",
        help="the gateway's store: a fresh SQLite file, or a redis-server the bench starts",
    )
    parser.add_argument(
        "--store-options",
        default="",
        help="appended to the SQLite store URL, e.g. '?writer=loop' (A/B of the writer)",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, db)")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        parser.error("needs at least 2 cores (gateway on core 0, mock + load on core 1)")
    profile = dict(PROFILES["quick" if args.quick else "full"])
    if args.duration:
        profile["scenario_s"] = args.duration
    args.requests = args.requests or profile["requests"]
    procs = Procs()
    bench = None
    with exits_cleanly(procs):
        try:
            bench = Bench(args, profile, procs)
            result = bench.run()
        finally:
            procs.stop_all()
            if bench is not None and not args.keep_tmp:
                shutil.rmtree(bench.tmp, ignore_errors=True)
            elif bench is not None:
                log(f"kept {bench.tmp}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(report.table(result))
    print(f"\nJSON written to {out}")
    return 1 if result["total_errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; child processes stopped")
        sys.exit(130)
