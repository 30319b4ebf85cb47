"""Fallback load generator (used only when wrk is missing): N keep-alive HTTP/1.1
connections over raw asyncio sockets, each sending the next request as soon as the
previous response (Content-Length or chunked body) is fully read. Same env vars and
the same ``BENCH_JSON`` output line as bench/load.lua."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from urllib.parse import urlsplit

STEPS = 8


def _body(stream: bool) -> bytes:
    text = (
        '{"model":"gpt-4o","messages":['
        '{"role":"system","content":"You are a terse assistant."},'
        '{"role":"user","content":"Say hello to the benchmark in one short sentence."}'
        '],"max_tokens":64'
    )
    return (text + (',"stream":true}' if stream else "}")).encode()


def build_cycle(host: str, path: str) -> list[bytes]:
    key = os.environ.get("BENCH_KEY", "bench")
    mode = os.environ.get("BENCH_STREAM", "0")
    run = os.environ.get("BENCH_RUN", "run")
    workflows = int(os.environ.get("BENCH_WORKFLOWS", "4"))
    cycle = []
    for w in range(1, workflows + 1):
        for s in range(1, STEPS + 1):
            body = _body(mode == "1" or (mode == "mix" and s % 2 == 0))
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {key}\r\nX-Workflow-Id: bench-{run}-wf{w}\r\n"
                f"X-Workflow-Budget-Usd: 1000000\r\nX-Workflow-Step: step-{s}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            cycle.append(head.encode() + body)
    return cycle


class Stats:
    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.issued = 0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one whole response; return (status, bytes read)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    size = len(head)
    marker = lower.find(b"content-length:")
    if marker >= 0:
        end = lower.index(b"\r\n", marker)
        length = int(lower[marker + 15 : end])
        size += len(await reader.readexactly(length))
        return status, size
    if b"transfer-encoding: chunked" not in lower:
        raise ConnectionError("response without Content-Length or chunked encoding")
    while True:
        line = await reader.readuntil(b"\r\n")
        chunk = int(line.split(b";", 1)[0], 16)
        size += len(line)
        if chunk == 0:
            size += len(await reader.readuntil(b"\r\n"))  # no trailers expected
            return status, size
        size += len(await reader.readexactly(chunk + 2))


async def connection(
    host: str, port: int, cycle: list[bytes], stats: Stats, stop_at: float, limit_s: float
) -> None:
    reader = writer = None
    while time.monotonic() < stop_at:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                stats.errors["connect"] += 1
                await asyncio.sleep(0.01)
                continue
        assert reader is not None
        request = cycle[stats.issued % len(cycle)]
        stats.issued += 1
        start = time.perf_counter_ns()
        try:
            writer.write(request)
            status, size = await asyncio.wait_for(read_response(reader), limit_s)
        except TimeoutError:
            stats.errors["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            stats.errors["read"] += 1
        else:
            stats.latencies_us.append((time.perf_counter_ns() - start) // 1000)
            stats.bytes += size
            if status >= 400:
                stats.errors["status"] += 1
            continue
        writer.close()
        writer = None
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def pct(sorted_us: list[int], p: float) -> int:
    if not sorted_us:
        return 0
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * p / 100))]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    cycle = build_cycle(f"{host}:{port}", url.path or "/")
    stats = Stats()
    start = time.monotonic()
    stop_at = start + args.duration
    await asyncio.gather(
        *(connection(host, port, cycle, stats, stop_at, args.timeout) for _ in range(args.conns))
    )
    lat = sorted(stats.latencies_us)
    return {
        "requests": len(lat),
        "duration_us": int((time.monotonic() - start) * 1e6),
        "bytes": stats.bytes,
        **stats.errors,
        "p50_us": pct(lat, 50),
        "p90_us": pct(lat, 90),
        "p99_us": pct(lat, 99),
        "mean_us": sum(lat) / len(lat) if lat else 0.0,
        "max_us": lat[-1] if lat else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print("BENCH_JSON " + json.dumps(runner(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
