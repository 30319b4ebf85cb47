"""Derived numbers, PASS/MISS targets and the printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONNS = (1, 4, 16)
MODES = ("json", "sse")
MODE_NAMES = {"json": "non-streaming", "sse": "streaming"}

TARGETS = {
    "json_rps": 2500.0,  # req/s at saturation (16 clients), at least
    "sse_rps": 1500.0,
    "added_p50_ms": 1.0,  # gateway p50 - mock p50 at 4 clients, at most
    "cpu_ms_per_req": 0.4,  # at most
    "rss_mb": 100.0,  # at most
    "rss_growth_mb": 5.0,  # less than
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


def derive(scenarios: list[dict[str, Any]], rss: dict[str, Any]) -> dict[str, Any]:
    added: dict[str, dict[str, dict[str, float]]] = {}
    for mode in MODES:
        added[mode] = {}
        for c in CONNS:
            gw, mock = find(scenarios, mode, "gateway", c), find(scenarios, mode, "mock", c)
            added[mode][str(c)] = {
                "p50_ms": round(gw["p50_ms"] - mock["p50_ms"], 3),
                "p99_ms": round(gw["p99_ms"] - mock["p99_ms"], 3),
            }
    sat = {mode: find(scenarios, mode, "gateway", 16) for mode in MODES}
    return {
        "added_latency": added,
        "saturation_rps": {mode: sat[mode]["rps"] for mode in MODES},
        "cpu_ms_per_request": {mode: sat[mode]["cpu_ms_per_req"] for mode in MODES},
        "rss_mb": rss,
    }


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
        f"SQLite store (db + wal) at the end: {result['store_bytes'] / 1e6:.1f} MB",
        "",
        f"{'target':<52}{'value':>12}  {'goal':<16}result",
        "-" * 88,
    ]
    for t in result["targets"]:
        goal = f"{t['op']} {t['goal']:g} {t['unit']}"
        value = f"{t['value']:.3f}" if t["unit"] == "ms" else f"{t['value']:.1f}"
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
