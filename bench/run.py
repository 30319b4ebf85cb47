"""spendgate benchmark: the mock provider (core 1) vs the full-featured gateway in front of
it (core 0), driven by wrk (core 1). See bench/README.md.

    python bench/run.py [--quick] [--requests N] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import report
from loadgen import LoadGen
from procs import Procs, comm, cpu_ms, exits_cleanly, free_port, http, python, rss_mb, wait_http

REPO = Path(__file__).resolve().parent.parent
GATEWAY_CORE, LOAD_CORE = 0, 1
GATEWAY_KEY = "sg-bench-key-0123456789"
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
SMOKE_BODY = {
    "model": "gpt-4o",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_config(tmp: Path, mock_port: int) -> Path:
    base = f"http://127.0.0.1:{mock_port}"
    config = {  # JSON is YAML
        "store": f"sqlite:///{tmp / 'state.db'}",
        "auth": {
            "admin_key_env": "SG_BENCH_ADMIN",
            "keys": [
                {
                    "name": "bench",
                    "key_env": "SG_BENCH_KEY",
                    "budget_usd": 1_000_000,
                    "budget_period": "30d",
                }
            ],
        },
        "providers": {
            "mock-openai": {
                "kind": "openai",
                "base_url": f"{base}/v1",
                "api_key_env": "SG_BENCH_PROVIDER_KEY",
            },
            "mock-anthropic": {
                "kind": "anthropic",
                "base_url": base,
                "api_key_env": "SG_BENCH_PROVIDER_KEY",
            },
        },
        "models": {
            "gpt-4o": {
                "provider": "mock-openai",
                "upstream_model": "gpt-4o",
                "fallbacks": ["claude-sonnet"],
            },
            "claude-sonnet": {"provider": "mock-anthropic", "upstream_model": "claude-sonnet-4-5"},
        },
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TIKTOKEN_CACHE_DIR", "/work/shared/tiktoken")
    env.update(
        SG_BENCH_KEY=GATEWAY_KEY,
        SG_BENCH_ADMIN="sg-bench-admin-key",
        SG_BENCH_PROVIDER_KEY="sk-mock-provider",
        PYTHONUNBUFFERED="1",
    )
    return env


def smoke(url: str, key: str) -> None:
    """One JSON and one SSE request with the benchmark's headers: fail early and clearly."""
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {key}",
        "x-workflow-id": "bench-smoke",
        "x-workflow-budget-usd": "1000000",
        "x-workflow-step": "smoke",
    }
    for stream in (False, True):
        body = json.dumps({**SMOKE_BODY, "stream": stream}).encode()
        status, text = http("POST", f"{url}/v1/chat/completions", body, headers, timeout=30)
        if status != 200 or (stream and b"data: [DONE]" not in text):
            raise RuntimeError(
                f"smoke request to {url} (stream={stream}) got {status}: {text[:500]!r}"
            )


class Bench:
    def __init__(self, args: argparse.Namespace, profile: dict[str, Any], procs: Procs) -> None:
        self.args, self.profile, self.procs = args, profile, procs
        self.tmp = Path(tempfile.mkdtemp(prefix="spendgate-bench-"))
        self.gateway_requests = 0
        self.errors_seen = 0
        self.cut_allowance = 0  # streams the load generator may cut when it stops: conns per run

    def start(self) -> None:
        env = child_env()
        mock_port, gw_port = free_port(), free_port()
        self.mock_url, self.gw_url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{gw_port}"
        config = write_config(self.tmp, mock_port)
        self.mock_log, self.gw_log = self.tmp / "mock.log", self.tmp / "gateway.log"
        with self.mock_log.open("wb") as mlog:
            self.mock = self.procs.start(
                "mock",
                [python(), "-m", "gateway", "mock-provider", "--port", str(mock_port)],
                core=LOAD_CORE,
                env=env,
                cwd=REPO,
                stdout=mlog,
                stderr=subprocess.STDOUT,
            )
        with self.gw_log.open("wb") as glog, (self.tmp / "gateway.out").open("wb") as gout:
            self.gw = self.procs.start(
                "gateway",
                [
                    python(),
                    "-m",
                    "gateway",
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    str(gw_port),
                    "--workers",
                    "1",
                ],
                core=GATEWAY_CORE,
                env=env,
                cwd=REPO,
                stdout=gout,
                stderr=glog,
            )
        waited = wait_http(f"{self.mock_url}/_mock/health", self.mock, log=self.mock_log)
        log(f"mock provider pid {self.mock.pid} up on {self.mock_url} after {waited:.2f}s")
        waited = wait_http(f"{self.gw_url}/readyz", self.gw, log=self.gw_log)
        log(
            f"gateway pid {self.gw.pid} ({comm(self.gw.pid)}) up on {self.gw_url} "
            f"after {waited:.2f}s; temp dir {self.tmp}"
        )
        smoke(self.mock_url, GATEWAY_KEY)
        smoke(self.gw_url, GATEWAY_KEY)
        self.gateway_requests += 2

    def load(self, target: str, conns: int, seconds: int, mode: str) -> dict[str, Any]:
        url = self.gw_url if target == "gateway" else self.mock_url
        pid = self.gw.pid if target == "gateway" else self.mock.pid
        cpu0 = cpu_ms(pid)
        res = self.loadgen.run(f"{url}/v1/chat/completions", conns, seconds, mode)
        cpu = cpu_ms(pid) - cpu0
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
        }
        flag = "" if not res.error_count else f"  !!! {res.error_count} ERRORS {res.errors}"
        log(
            f"{target:>7} {row['mode']:>4} c={conns:<2} {res.rps:8.0f} req/s  p50 "
            f"{res.p50_ms:7.3f} ms  p99 {res.p99_ms:7.3f} ms  cpu {row['cpu_ms_per_req']:.3f} "
            f"ms/req ({row['cpu_util']:.0%} of a core){flag}"
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
        for target in ("mock", "gateway"):
            for mode in ("0", "1"):
                self.load(target, 16, p["warmup_s"], mode)
        http("POST", f"{self.mock_url}/_mock/reset", b"")
        rss = {"after_warmup": rss_mb(self.gw.pid)}
        scenarios = [
            self.load(target, conns, p["scenario_s"], mode)
            for mode in ("0", "1")
            for conns in report.CONNS
            for target in ("mock", "gateway")
        ]
        rss["after_scenarios"] = rss_mb(self.gw.pid)
        soak = self.soak()
        rss["after_soak"] = rss_mb(self.gw.pid)
        samples = [s["rss_mb"] for s in soak["samples"]]
        rss["max"] = max([*rss.values(), *samples])
        rss["growth"] = round(rss["after_soak"] - rss["after_warmup"], 2)
        rss["soak_growth"] = round(rss["after_soak"] - rss["after_scenarios"], 2)
        derived = report.derive(scenarios, rss)
        access = report.scan_access_log(self.gw_log, self.cut_allowance)
        self.errors_seen += access["bad_access_lines"] + access["excess_disconnects"]
        return {
            "meta": self.meta(),
            "scenarios": scenarios,
            "soak": soak,
            "gateway_requests_total": self.gateway_requests,
            "gateway_log": access,
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
