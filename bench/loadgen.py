"""Load generators: ``wrk`` with bench/load.lua (preferred), or bench/pyload.py (a raw-socket
asyncio keep-alive client) when wrk is not installed. Both run pinned to the load core as
a child process and print one ``BENCH_JSON {...}`` line, parsed into a ``Result``."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from procs import Procs, python

HERE = Path(__file__).resolve().parent
LUA = HERE / "load.lua"
PYLOAD = HERE / "pyload.py"
TIMEOUT_S = 10  # per-request timeout of the load generator


@dataclass
class Result:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    bytes: int
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_count"] = self.error_count
        return data


def parse_result(stdout: str) -> Result:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"load generator printed no BENCH_JSON line:\n{stdout[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    duration = raw["duration_us"] / 1e6
    return Result(
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        max_ms=raw["max_us"] / 1000,
        bytes=raw["bytes"],
        errors={k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
    )


class LoadGen:
    """Runs one fixed-duration load against a URL with ``conns`` keep-alive connections."""

    def __init__(self, procs: Procs, core: int, key: str, run_id: str, kind: str) -> None:
        self.procs, self.core, self.key, self.run_id = procs, core, key, run_id
        self.kind = kind
        self.version = _wrk_version() if kind == "wrk" else "bench/pyload.py (asyncio raw socket)"

    @staticmethod
    def choose(preferred: str) -> str:
        """``wrk`` if it is installed (and not overridden), else the Python fallback."""
        if preferred == "python":
            return "python"
        if shutil.which("wrk"):
            return "wrk"
        if preferred == "wrk":
            raise RuntimeError(
                "wrk is not installed (apt-get install -y wrk), or use --loadgen python"
            )
        return "python"

    def run(self, url: str, conns: int, duration_s: int, stream: str, workflows: int = 4) -> Result:
        """``stream``: "0" JSON, "1" SSE, "mix" alternate both."""
        env = {
            "BENCH_KEY": self.key,
            "BENCH_STREAM": stream,
            "BENCH_RUN": self.run_id,
            "BENCH_WORKFLOWS": str(workflows),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        if self.kind == "wrk":
            argv = [
                "wrk",
                "-t1",
                f"-c{conns}",
                f"-d{duration_s}s",
                f"--timeout={TIMEOUT_S}s",
                "-s",
                str(LUA),
                url,
            ]
        else:
            argv = [
                python(),
                str(PYLOAD),
                "--url",
                url,
                "--conns",
                str(conns),
                "--duration",
                str(duration_s),
                "--timeout",
                str(TIMEOUT_S),
            ]
        proc = self.procs.start(
            f"load-{self.kind}",
            argv,
            core=self.core,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            out, _ = proc.communicate(timeout=duration_s + TIMEOUT_S + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.procs.forget(proc)
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{text[-2000:]}")
        return parse_result(text)


def _wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout + out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"
