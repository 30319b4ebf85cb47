"""The ``spendgate`` command: serve, mock-provider, check-config."""

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

from gateway.config import LOG_LEVEL_ENV, ConfigError, load, load_file, resolve_secrets
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-provider":
        from gateway.mock_provider import serve

        serve(args.host, args.port, args.script)
        return 0
    if args.command == "check-config":
        return check_config(args.file)
    return serve_gateway(args)


def check_config(path: str) -> int:
    try:
        config = load_file(path)
        resolve_secrets(config)
    except ConfigError as exc:
        print(f"{path}: invalid", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"{path}: ok ({len(config.providers)} providers, {len(config.models)} models, "
        f"{len(config.auth.keys)} keys, store {config.store.split(':', 1)[0]})"
    )
    return 0


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
