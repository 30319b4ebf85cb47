"""The mock provider's ASGI application: routing, lifespan and the ``/_mock`` control API."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from gateway.mock_provider import errors, flow
from gateway.mock_provider.anthropic_api import MessagesApi
from gateway.mock_provider.exchange import Exchange, Receive, Scope, ScriptedReset, Send
from gateway.mock_provider.openai_api import ChatCompletionsApi, EmbeddingsApi
from gateway.mock_provider.ratelimit import RateLimit
from gateway.mock_provider.responses_api import ResponsesApi
from gateway.mock_provider.script import ScriptBook, ScriptError, parse_script
from gateway.mock_provider.stats import Stats

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-sonnet-4-5")

Handler = Callable[["MockProvider", Exchange], Awaitable[None]]

_CHAT = ChatCompletionsApi()
_EMBEDDINGS = EmbeddingsApi()
_MESSAGES = MessagesApi()
_RESPONSES = ResponsesApi()


class MockProvider:
    """A scripted fake of the OpenAI and Anthropic HTTP APIs (a raw ASGI app).

    ``scripts`` and ``stats`` belong to the event loop serving the app: other threads
    should use the ``/_mock`` HTTP API rather than touch them.
    """

    def __init__(self, script: dict[str, Any] | None = None) -> None:
        self.scripts = ScriptBook()
        self.stats = Stats()
        self.rate = RateLimit()
        self.created = int(time.time())
        if script:
            self.scripts.load(script)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send)
        handler = ROUTES.get((scope["method"], ex.path.rstrip("/") or "/"))
        if handler is None:
            document = errors.openai_error(f"Unknown path {ex.path}", "invalid_request_error")
            await ex.respond_json(404, document, [])
            return
        await handler(self, ex)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _chat(app: MockProvider, ex: Exchange) -> None:
    await flow.handle(_CHAT, ex, app.scripts, app.stats, app.rate)


async def _embeddings(app: MockProvider, ex: Exchange) -> None:
    await flow.handle(_EMBEDDINGS, ex, app.scripts, app.stats)


async def _messages(app: MockProvider, ex: Exchange) -> None:
    await flow.handle(_MESSAGES, ex, app.scripts, app.stats, app.rate)


async def _responses(app: MockProvider, ex: Exchange) -> None:
    await flow.handle(_RESPONSES, ex, app.scripts, app.stats, app.rate)


async def _count_tokens(app: MockProvider, ex: Exchange) -> None:
    """Anthropic's free prompt count: the same truth as a Messages request's prompt."""
    body = _parse_object(await ex.read_body())
    rejection = _MESSAGES.reject(ex.headers, body or None)
    if rejection is not None:
        await ex.respond_json(*rejection, [])
        return
    await ex.respond_json(200, {"input_tokens": _MESSAGES.prompt_tokens(body)}, [])


async def _models(app: MockProvider, ex: Exchange) -> None:
    names = dict.fromkeys([*DEFAULT_MODELS, *app.scripts.models()])
    data = [
        {"id": name, "object": "model", "created": app.created, "owned_by": "spendgate-mock"}
        for name in names
    ]
    await ex.respond_json(200, {"object": "list", "data": data}, [])


async def _register_script(app: MockProvider, ex: Exchange) -> None:
    raw = await ex.read_body()
    try:
        body = orjson.loads(raw or b"null")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise ScriptError("body must be an object with a string 'model'")
        script = parse_script(body)
    except (orjson.JSONDecodeError, ScriptError) as exc:
        await ex.respond_json(400, {"ok": False, "error": str(exc)}, [])
        return
    app.scripts.register(body["model"], script)
    await ex.respond_json(200, {"ok": True, "model": body["model"], "steps": len(script.steps)}, [])


async def _ratelimit(app: MockProvider, ex: Exchange) -> None:
    """``POST /_mock/ratelimit {"requests": N, "window_s": T}`` (see ``ratelimit``)."""
    body = _parse_object(await ex.read_body())
    requests, window = body.get("requests"), body.get("window_s", 60)
    if not isinstance(requests, int) or requests < 0 or not isinstance(window, int | float):
        await ex.respond_json(400, {"ok": False, "error": "requests: int >= 0, window_s"}, [])
        return
    app.rate.configure(requests, float(window))
    await ex.respond_json(200, {"ok": True}, [])


def _parse_object(raw: bytes | None) -> dict[str, Any]:
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


async def _reset(app: MockProvider, ex: Exchange) -> None:
    await ex.read_body()
    app.rate.configure(0, 60.0)
    app.scripts.clear()
    app.stats.reset()
    await ex.respond_json(200, {"ok": True}, [])


async def _stats(app: MockProvider, ex: Exchange) -> None:
    """``GET /_mock/stats[?model=NAME][&since=ID]``: records filtered by model and id."""
    query = parse_qs(ex.query)
    model = query["model"][-1] if "model" in query else None
    since = query.get("since", ["0"])[-1]
    snapshot = app.stats.snapshot(model=model, since=int(since) if since.isdigit() else 0)
    await ex.respond_json(200, snapshot, [])


async def _health(app: MockProvider, ex: Exchange) -> None:
    await ex.respond_json(200, {"ok": True}, [])


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): _chat,
    ("POST", "/v1/embeddings"): _embeddings,
    ("POST", "/v1/messages"): _messages,
    ("POST", "/v1/messages/count_tokens"): _count_tokens,
    ("POST", "/v1/responses"): _responses,
    ("GET", "/v1/models"): _models,
    ("POST", "/_mock/script"): _register_script,
    ("POST", "/_mock/reset"): _reset,
    ("POST", "/_mock/ratelimit"): _ratelimit,
    ("GET", "/_mock/stats"): _stats,
    ("GET", "/_mock/health"): _health,
}


class _DropScriptedResets(logging.Filter):
    """Keep the server's error log free of the resets a script asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ScriptedReset)


def quiet_scripted_resets(logger_name: str = "uvicorn.error") -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(item, _DropScriptedResets) for item in logger.filters):
        logger.addFilter(_DropScriptedResets())


def create_app(script: dict[str, Any] | None = None) -> MockProvider:
    """The mock provider app; ``script`` maps model names to scripts (see the package doc)."""
    quiet_scripted_resets()
    return MockProvider(script)
