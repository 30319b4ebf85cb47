"""Running the mock provider under uvicorn, with an optional script file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import uvicorn

from gateway.mock_provider.app import create_app
from gateway.mock_provider.script import ScriptError

# Longer than any client pool's idle expiry, so the mock never closes a kept-alive
# connection just as a client reuses it (that race would look like a provider fault).
KEEP_ALIVE_S = 75


def load_script_file(path: str | Path) -> dict[str, Any]:
    """Read a ``{model: script}`` mapping from a JSON or YAML file."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data: Any = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScriptError(f"{file}: a script file must map model names to scripts")
    return data


def _loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _http() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def serve(host: str, port: int, script_path: str | None = None) -> None:
    """Serve the mock provider on ``host:port`` until interrupted."""
    script = load_script_file(script_path) if script_path else None
    config = uvicorn.Config(
        create_app(script),
        host=host,
        port=port,
        loop=_loop(),
        http=_http(),
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    uvicorn.Server(config).run()
