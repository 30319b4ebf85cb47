"""The ``spendgate`` command: serve, mock-provider, check-config, prices."""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import uvicorn
import yaml

from accounting.prices_db import PriceNotFound, guess_provider
from accounting.pricing import Price, Rates, rate_usd_per_mtok
from gateway.config import (
    LOG_LEVEL_ENV,
    ConfigError,
    DefaultsConfig,
    FileConfig,
    ModelConfig,
    config_path_from_env,
    context_window_of,
    load,
    load_file,
    max_output_of,
    price_of,
    resolve_secrets,
)
from gateway.telemetry.tracing import exporters_from_env

DEMO_PROVIDER_KEY_ENV = "SPENDGATE_DEMO_PROVIDER_KEY"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spendgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config (default: $SPENDGATE_CONFIG)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="serve in front of a built-in mock provider (no key, no network)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    mock = sub.add_parser("mock-provider", help="run the scripted fake upstream")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=4010)
    mock.add_argument("--script", help="JSON or YAML file: model -> script")
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    prices = sub.add_parser("prices", help="show what models are charged, and why")
    prices.add_argument("models", nargs="+", metavar="MODEL")
    prices.add_argument("--config", help="YAML config (default: $SPENDGATE_CONFIG)")
    prices.add_argument(
        "--provider",
        choices=["openai", "anthropic"],
        help="without a config: the provider of a bare model name (default: guessed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-provider":
        from gateway.mock_provider import serve

        serve(args.host, args.port, args.script)
        return 0
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "prices":
        return show_prices(args.models, args.config or config_path_from_env(), args.provider)
    return serve_gateway(args)


def _print_problems(path: str, exc: ConfigError) -> None:
    print(f"{path}: invalid", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def check_config(path: str) -> int:
    try:
        config = load_file(path)
        resolve_secrets(config)
    except ConfigError as exc:
        _print_problems(path, exc)
        return 1
    print(
        f"{path}: ok ({len(config.providers)} providers, {len(config.models)} models, "
        f"{len(config.auth.keys)} keys, store {config.store.split(':', 1)[0]})"
    )
    return 0


_KINDS = ("input", "cached input", "cache write", "cache write 1h", "output")


def _cells(rates: Rates) -> list[str]:
    picos = (rates.input, rates.cached_input, rates.cache_write, rates.cache_write_1h)
    return [rate_usd_per_mtok(pico) for pico in (*picos, rates.output)]


def _price_lines(price: Price) -> list[str]:
    rows = [["USD per MTok", *_KINDS], ["base", *_cells(price.base)]]
    rows += [[f"input > {start}", *_cells(rates)] for start, rates in price.tier_rates]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    widths[0] = max(widths[0], 14)  # aligned with the other labels
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]


def _describe(name: str, where: str, price: Price, max_out: int, window: int | None) -> None:
    print(f"{name}: {where}")
    print(f"  price from      {price.source}")
    for line in _price_lines(price):
        print(f"  {line}".rstrip())
    print(f"  max output      {max_out} tokens")
    print(f"  context window  {f'{window} tokens' if window else 'unknown'}")


def _show_configured(name: str, config: FileConfig, path: str) -> bool:
    model = config.models.get(name)
    if model is None:
        print(f"spendgate prices: no model named {name!r} in {path}", file=sys.stderr)
        return False
    kind = config.providers[model.provider].kind
    where = f"{model.upstream_model} at provider {model.provider} ({kind})"
    price = price_of(model, kind)
    window = context_window_of(model, kind)
    _describe(name, where, price, max_output_of(model, config.defaults), window)
    return True


def _show_bare(name: str, provider: str | None) -> bool:
    kind = provider or guess_provider(name)
    model = ModelConfig(provider=kind, upstream_model=name)
    try:
        price = price_of(model, kind)
    except PriceNotFound as exc:
        print(
            f"spendgate prices: unknown model {name!r}: {exc}; a config must set its "
            "models.<name>.price",
            file=sys.stderr,
        )
        return False
    window = context_window_of(model, kind)
    _describe(name, f"{name} at {kind}", price, max_output_of(model, DefaultsConfig()), window)
    return True


def show_prices(names: Sequence[str], config_path: str | None, provider: str | None) -> int:
    """Print each model's rates per MTok (with tiers), max output, context window and
    price source; exit 1 when one is unknown, 2 when the config is invalid."""
    if not config_path:
        return 0 if all([_show_bare(name, provider) for name in names]) else 1
    try:
        config = load_file(config_path)
    except ConfigError as exc:
        _print_problems(config_path, exc)
        return 2
    return 0 if all([_show_configured(name, config, config_path) for name in names]) else 1


def serve_gateway(args: argparse.Namespace) -> int:
    from gateway.telemetry import logging as log

    log.setup(args.log_level.upper())
    os.environ[LOG_LEVEL_ENV] = args.log_level.upper()  # the workers' logging too
    if args.demo:
        args.config = _start_demo()
    if args.config:
        os.environ["SPENDGATE_CONFIG"] = str(Path(args.config).resolve())
    try:
        config, _ = load(args.config)
        exporters_from_env()
    except (ConfigError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"spendgate: serving on http://{args.host}:{args.port}/v1", file=sys.stderr)
    if args.workers > 1:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="spendgate-"))
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        http="gateway.server:GuardedHttpTools",
        timeout_keep_alive=math.ceil(config.server.keep_alive_timeout_s),
        loop="uvloop",
        # whole seconds, rounded up: a fraction must not turn into 'no limit'
        timeout_graceful_shutdown=math.ceil(config.defaults.shutdown_grace_s),
    )
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_demo() -> str:
    """Start the mock provider in this process and write a config pointing at it."""
    from gateway.mock_provider import serve

    port = _free_port()
    threading.Thread(target=serve, args=("127.0.0.1", port), daemon=True).start()
    os.environ.setdefault(DEMO_PROVIDER_KEY_ENV, "demo-provider-key")
    folder = Path(tempfile.mkdtemp(prefix="spendgate-demo-"))
    base = f"http://127.0.0.1:{port}"
    config = {
        "store": f"sqlite:///{folder / 'state.db'}",
        "providers": {
            "mock-openai": {
                "kind": "openai",
                "base_url": f"{base}/v1",
                "api_key_env": DEMO_PROVIDER_KEY_ENV,
            },
            "mock-anthropic": {
                "kind": "anthropic",
                "base_url": base,
                "api_key_env": DEMO_PROVIDER_KEY_ENV,
            },
        },
        "models": {
            "gpt-4o": {
                "provider": "mock-openai",
                "upstream_model": "gpt-4o",
                "fallbacks": ["claude-sonnet"],
            },
            "claude-sonnet": {"provider": "mock-anthropic", "upstream_model": "claude-sonnet-4-5"},
            "text-embedding-3-small": {
                "provider": "mock-openai",
                "kind": "embeddings",
                "upstream_model": "text-embedding-3-small",
            },
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    print(f"spendgate demo: mock provider on {base}, config {path}", file=sys.stderr)
    return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
