"""Derived numbers, PASS/MISS targets and the printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONNS = (1, 4, 16)
TARGET_NAMES = ("mock", "floor", "gateway")  # the order each scenario runs them in
MODES = ("json", "sse")
MODE_NAMES = {"json": "non-streaming", "sse": "streaming"}

TARGETS = {
    "json_rps": 2500.0,  # req/s at saturation (16 clients), at least
    "sse_rps": 1500.0,
    "added_p50_ms": 1.0,  # gateway p50 - mock p50 at 4 clients, at most
    "cpu_ms_per_req": 0.4,  # at most
    "rss_mb": 100.0,  # at most
    "rss_growth_mb": 5.0,  # less than
    "floor_cpu_ratio": 3.0,  # gateway CPU per request / the floor's, at most (issue 16)
    "floor_rps_ratio": 1 / 3,  # gateway req/s / the floor's, at least
}


def scan_access_log(path: Path, cut_allowance: int) -> dict[str, Any]:
    """Check every access line: status 200, no error, not partial. ``client_disconnect``
    lines are streams cut when the load generator stopped (at most its connections per
    run, ``cut_allowance`` in all); only disconnects beyond that count as errors."""
    lines = bad = disconnects = 0
    statuses: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for raw in f:
            if b'"spendgate.access"' not in raw:
                continue
            entry = json.loads(raw)
            lines += 1
            status = str(entry.get("status"))
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200" and entry.get("error") == "client_disconnect":
                disconnects += 1
            elif status != "200" or entry.get("error") or entry.get("partial"):
                bad += 1
                if len(samples) < 5:
                    samples.append(entry)
    size = path.stat().st_size
    return {
        "bytes": size,
        "access_lines": lines,
        "statuses": statuses,
        "bytes_per_access_line": size / lines if lines else 0.0,
        "bad_access_lines": bad,
        "bad_samples": samples,
        "client_disconnects": disconnects,
        "disconnect_allowance": cut_allowance,
        "excess_disconnects": max(0, disconnects - cut_allowance),
    }


def find(scenarios: list[dict[str, Any]], mode: str, target: str, conns: int) -> dict[str, Any]:
    for s in scenarios:
        if (s["mode"], s["target"], s["conns"]) == (mode, target, conns):
            return s
    raise KeyError((mode, target, conns))


def derive(
    scenarios: list[dict[str, Any]], rss: dict[str, Any], floor_rss: dict[str, Any]
) -> dict[str, Any]:
    """Added latency (target p50/p99 - mock's) per mode and concurrency, for the gateway and
    the floor; saturation (16 clients) req/s and CPU per request; gateway/floor ratios."""
    added: dict[str, dict[str, dict[str, dict[str, float]]]] = {"gateway": {}, "floor": {}}
    for target, per_mode in added.items():
        for mode in MODES:
            per_mode[mode] = {}
            for c in CONNS:
                t, mock = find(scenarios, mode, target, c), find(scenarios, mode, "mock", c)
                per_mode[mode][str(c)] = {
                    "p50_ms": round(t["p50_ms"] - mock["p50_ms"], 3),
                    "p99_ms": round(t["p99_ms"] - mock["p99_ms"], 3),
                }
    sat = {mode: find(scenarios, mode, "gateway", 16) for mode in MODES}
    floor = {mode: find(scenarios, mode, "floor", 16) for mode in MODES}
    return {
        "added_latency": added["gateway"],
        "saturation_rps": {mode: sat[mode]["rps"] for mode in MODES},
        "cpu_ms_per_request": {mode: sat[mode]["cpu_ms_per_req"] for mode in MODES},
        "rss_mb": rss,
        "floor": {
            "added_latency": added["floor"],
            "saturation_rps": {mode: floor[mode]["rps"] for mode in MODES},
            "cpu_ms_per_request": {mode: floor[mode]["cpu_ms_per_req"] for mode in MODES},
            "rss_mb": floor_rss,
        },
        "vs_floor": {
            mode: {
                "rps_ratio": _ratio(sat[mode]["rps"], floor[mode]["rps"]),
                "cpu_ratio": _ratio(sat[mode]["cpu_ms_per_req"], floor[mode]["cpu_ms_per_req"]),
            }
            for mode in MODES
        },
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def targets(derived: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(name: str, value: float, goal: float, op: str, unit: str) -> None:
        ok = {">=": value >= goal, "<=": value <= goal, "<": value < goal}[op]
        rows.append(
            {"target": name, "value": value, "goal": goal, "op": op, "unit": unit, "pass": ok}
        )

    row(
        "non-streaming req/s @16 clients",
        derived["saturation_rps"]["json"],
        TARGETS["json_rps"],
        ">=",
        "req/s",
    )
    row(
        "streaming req/s @16 clients",
        derived["saturation_rps"]["sse"],
        TARGETS["sse_rps"],
        ">=",
        "req/s",
    )
    for mode in MODES:
        row(
            f"added p50 latency @4 clients ({MODE_NAMES[mode]})",
            derived["added_latency"][mode]["4"]["p50_ms"],
            TARGETS["added_p50_ms"],
            "<=",
            "ms",
        )
    for mode in MODES:
        row(
            f"gateway CPU per request @16 ({MODE_NAMES[mode]})",
            derived["cpu_ms_per_request"][mode],
            TARGETS["cpu_ms_per_req"],
            "<=",
            "ms",
        )
    for mode in MODES:
        vs = derived["vs_floor"][mode]
        row(
            f"gateway/floor CPU per request @16 ({MODE_NAMES[mode]})",
            vs["cpu_ratio"],
            TARGETS["floor_cpu_ratio"],
            "<=",
            "x",
        )
        row(
            f"gateway/floor req/s @16 ({MODE_NAMES[mode]})",
            vs["rps_ratio"],
            round(TARGETS["floor_rps_ratio"], 3),
            ">=",
            "x",
        )
    rss = derived["rss_mb"]
    row("gateway RSS, max seen", rss["max"], TARGETS["rss_mb"], "<=", "MB")
    row(
        "gateway RSS growth, warmup -> after soak",
        rss["growth"],
        TARGETS["rss_growth_mb"],
        "<",
        "MB",
    )
    return rows


def table(result: dict[str, Any]) -> str:
    sc, d = result["scenarios"], result["derived"]
    meta = result["meta"]
    out = [
        "",
        f"spendgate benchmark ({'quick' if meta['quick'] else 'full'}; load generator: "
        f"{meta['loadgen']}; gateway on core 0, mock + load generator on core 1; "
        f"{meta['scenario_s']}s per scenario)",
        "",
        f"{'mode':<14}{'conns':>5} | {'mock req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'err':>5} | "
        f"{'gw req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}{'cpu ms/req':>11} | "
        f"{'added p50':>9}{'added p99':>10}",
        "-" * 121,
    ]
    for mode in MODES:
        for c in CONNS:
            m, g = find(sc, mode, "mock", c), find(sc, mode, "gateway", c)
            a = d["added_latency"][mode][str(c)]
            out.append(
                f"{MODE_NAMES[mode]:<14}{c:>5} | {m['rps']:>10.0f}{m['p50_ms']:>9.3f}"
                f"{m['p99_ms']:>9.3f}{m['error_count']:>5} | {g['rps']:>9.0f}{g['p50_ms']:>9.3f}"
                f"{g['p99_ms']:>9.3f}{g['error_count']:>5}{g['cpu_ms_per_req']:>11.3f} | "
                f"{a['p50_ms']:>9.3f}{a['p99_ms']:>10.3f}"
            )
    out += floor_table(result)
    rss, soak, log = d["rss_mb"], result["soak"], result["gateway_log"]
    out += [
        "",
        f"soak: {soak['requests']} requests (streaming/non-streaming mixed, 16 clients) in "
        f"{soak['duration_s']:.0f}s = {soak['rps']:.0f} req/s, errors {soak['errors']}; "
        f"gateway requests in the whole run: {result['gateway_requests_total']}",
        f"gateway RSS MB: after warmup {rss['after_warmup']:.1f}, after scenarios "
        f"{rss['after_scenarios']:.1f}, after soak {rss['after_soak']:.1f} "
        f"(growth {rss['growth']:+.1f}, soak only {rss['soak_growth']:+.1f}, max {rss['max']:.1f})",
        f"gateway stderr (JSON access log): {log['bytes'] / 1e6:.1f} MB, {log['access_lines']} "
        f"access lines ({log['bytes_per_access_line']:.0f} B each); non-200/error/partial "
        f"lines: {log['bad_access_lines']}; streams cut by the load generator stopping: "
        f"{log['client_disconnects']} (allowed <= {log['disconnect_allowance']})",
        f"SQLite store (db + wal) at the end: {result['store_bytes'] / 1e6:.1f} MB"
        if result.get("store", "sqlite") == "sqlite"
        else "store: Redis (a redis-server of the benchmark's own on core 1)",
        "",
        f"{'target':<52}{'value':>12}  {'goal':<16}result",
        "-" * 88,
    ]
    for t in result["targets"]:
        goal = f"{t['op']} {t['goal']:g} {t['unit']}"
        value = f"{t['value']:.3f}" if t["unit"] in ("ms", "x") else f"{t['value']:.1f}"
        out.append(f"{t['target']:<52}{value:>12}  {goal:<16}{'PASS' if t['pass'] else 'MISS'}")
    if result["total_errors"]:
        out += [
            "",
            "!" * 84,
            f"!!! {result['total_errors']} ERRORS / NON-2xx RESPONSES IN THIS RUN "
            "(see errors in the JSON) -- the numbers are not valid",
            "!" * 84,
        ]
    return "\n".join(out)


def floor_table(result: dict[str, Any]) -> list[str]:
    """The floor (bench/floor.py) per scenario, then gateway vs floor at saturation."""
    sc, d = result["scenarios"], result["derived"]
    fl = d["floor"]
    out = [
        "",
        "floor: a feature-less proxy on the same stack (bench/floor.py), on core 0 as well",
        "",
        f"{'mode':<14}{'conns':>5} | {'floor req/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'err':>5}"
        f"{'cpu ms/req':>11} | {'added p50':>9}{'added p99':>10}",
        "-" * 86,
    ]
    for mode in MODES:
        for c in CONNS:
            f, a = find(sc, mode, "floor", c), fl["added_latency"][mode][str(c)]
            out.append(
                f"{MODE_NAMES[mode]:<14}{c:>5} | {f['rps']:>11.0f}{f['p50_ms']:>9.3f}"
                f"{f['p99_ms']:>9.3f}{f['error_count']:>5}{f['cpu_ms_per_req']:>11.3f} | "
                f"{a['p50_ms']:>9.3f}{a['p99_ms']:>10.3f}"
            )
    out += [
        "",
        "spendgate vs floor (req/s and CPU at 16 clients, added p50 at 4 clients; goals: "
        f"CPU <= {TARGETS['floor_cpu_ratio']:g}x floor, req/s >= 1/3 of floor)",
        "",
        f"{'mode':<14}| {'floor req/s':>11}{'cpu ms':>8}{'add p50':>8} | "
        f"{'gw req/s':>9}{'cpu ms':>8}{'add p50':>8} | {'req/s ratio':>11}{'cpu ratio':>10}",
        "-" * 86,
    ]
    for mode in MODES:
        vs = d["vs_floor"][mode]
        out.append(
            f"{MODE_NAMES[mode]:<14}| {fl['saturation_rps'][mode]:>11.0f}"
            f"{fl['cpu_ms_per_request'][mode]:>8.3f}"
            f"{fl['added_latency'][mode]['4']['p50_ms']:>8.3f} | "
            f"{d['saturation_rps'][mode]:>9.0f}{d['cpu_ms_per_request'][mode]:>8.3f}"
            f"{d['added_latency'][mode]['4']['p50_ms']:>8.3f} | "
            f"{vs['rps_ratio']:>11.3f}{vs['cpu_ratio']:>10.2f}"
        )
    busy = {
        t: [s["core0_other_util"] for s in sc if s["target"] == t and "core0_other_util" in s]
        for t in ("floor", "gateway")
    }
    if busy["floor"] and busy["gateway"]:
        out.append(
            "core 0 busy with other processes during the scenarios (noise; 0% on a quiet "
            f"machine): floor runs {sum(busy['floor']) / len(busy['floor']):.0%}, gateway "
            f"runs {sum(busy['gateway']) / len(busy['gateway']):.0%} on average"
        )
    frss = fl["rss_mb"]
    out.append(
        f"RSS MB: floor {frss['max']:.1f} (after warmup {frss['after_warmup']:.1f}), "
        f"spendgate {d['rss_mb']['max']:.1f} (after warmup {d['rss_mb']['after_warmup']:.1f})"
    )
    return out
