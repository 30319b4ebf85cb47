"""A scripted fake LLM provider speaking the OpenAI and Anthropic HTTP APIs.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``POST /v1/responses``
(OpenAI; need ``Authorization: Bearer <non-empty>``; the Responses API is described in
``responses_api``), ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (Anthropic; need
``x-api-key`` and ``anthropic-version``), ``GET /v1/models``, and the control API:
``POST /_mock/script`` ``{"model": name, "steps": [step, ...], "default": step}``,
``POST /_mock/reset``, ``GET /_mock/stats[?model=&since=]`` (also ``max_concurrency``,
the most requests answered at once, and ``rate_limited``), ``GET /_mock/health``, and
``POST /_mock/ratelimit`` ``{"requests": N, "window_s": T}`` (``ratelimit``: the
provider's rate-limit headers, and 429 beyond N per window).

Scripts
    Each provider request whose ``model`` equals a script's name pops its next step;
    when the steps run out the script's ``default`` (or plain success) applies. A
    script named ``"*"`` serves models without their own. Registering a model again
    replaces its script. ``/_mock/reset`` clears all scripts (also those given to
    ``create_app``/``serve``) and all stats.

Step keys (all optional; ``{}`` is a normal success)
    ``status``, ``headers``, ``body``: answer with that status, headers and body
    (``body`` may be a raw string, e.g. deliberately malformed JSON). Without ``body``
    a status >= 400 gets a provider-shaped error body; ``context_window: true`` makes
    a 400 a context-length error, ``content_policy: true`` (OpenAI) a
    ``content_policy_violation``. ``headers`` also apply to successes.
    ``include_usage_on_error``: the error body carries a ``usage`` block.
    ``delay_s``: wait before the response headers. ``chunk_delay_s``: wait before
    each content chunk and before the closing events of a stream.
    ``hang``: never answer. ``hang_after_chunks: N``: send N content chunks, then
    nothing. ``reset_after_chunks: N``: send N content chunks, then drop the
    connection mid-body. ``close_after_chunks: N``: send N content chunks, then end
    the body cleanly with no finish event and no terminator. If several are set, the
    smallest N wins; N beyond the content means "after all content". On a
    non-streaming request these send half of the JSON body, then cut the same way.
    ``no_done``: omit ``data: [DONE]`` (Anthropic: ``message_stop``).
    ``malformed_at_chunk: N``: insert the event ``data: {not json`` after N content
    chunks went out (N is a 0-based chunk index; the event carries no tokens).
    ``error_after_chunks: N``: send N content chunks, then the provider's in-stream
    error event (OpenAI ``data: {"error": ...}``; Anthropic ``event: error``) and end.
    ``echo_headers``: error answers and in-stream error events echo the request's
    headers (credentials included), as debug proxies and some servers do.
    ``reject_prefill``: refuse (400) a request that asks to continue a final assistant
    message, as models without prefill support do.

Continuations
    A request whose last message is the assistant's (Anthropic; OpenAI with
    ``continue_final_message: true``, as vLLM) continues it: the answer goes on from
    the words the prefill already holds (each word one token), so a stream cut after
    k words and continued gives the same words as an unbroken one. Anthropic refuses a
    prefill that ends with whitespace, as the real API does. The prefill counts as
    prompt tokens.
    ``tool_call: {"name", "arguments"}``: answer with a tool call (``arguments`` an
    object, sent as ``json.dumps(arguments)``, or a string sent as is).
    ``usage: false``: never send a usage block. ``cached_tokens: N``: report N
    cached prompt tokens (OpenAI ``prompt_tokens_details.cached_tokens``; Anthropic
    ``cache_read_input_tokens``, with ``input_tokens`` = prompt - N as Anthropic does).
    ``cache_write_tokens: N`` (Anthropic): report N prompt tokens written to the prompt
    cache (``cache_creation_input_tokens: N``, with ``input_tokens`` = prompt - cached -
    N; at most what the cache reads leave of the prompt); the stats record keeps the
    full prompt in ``prompt_tokens`` and N in ``cache_write_tokens``. OpenAI reports no
    cache writes and ignores it.
    ``completion_tokens: N``: generate N words instead of 20.

Token truth (o200k_base)
    The completion is a fixed cycle of words, each one token with its leading space;
    ``max_tokens``/``max_completion_tokens`` cap it (finish ``length``). Prompt tokens:
    for each message, the tokens of its text (a string, or the ``text`` of the parts of
    a list) + 3, plus 3 per request; Anthropic's ``system`` counts as one more message.
    Embeddings: the tokens of each string input, summed (token-id inputs count their
    length). A tool call's completion tokens are the tokens of the function name plus
    the tokens of the arguments JSON string; it is streamed as one opening chunk (id and
    name; carries the name tokens) and argument fragments split on token boundaries (at
    least 2 when the arguments have 2+ tokens; each carries its own tokens). Tool calls
    ignore the output cap.

Stats
    One record per provider request (the last 5000): ``completion_tokens`` and
    ``chunks_sent`` count only what was written before a cut, disconnect or reset.
    ``prompt_tokens`` is the request's prompt count for every generation step, however
    it ended (also hangs and cancellations); for a scripted error answer it is 0 unless
    ``include_usage_on_error``. Non-streaming answers have ``chunks_sent`` 0. Outcomes:
    ``ok``, ``error``, ``reset``, ``closed``, ``hang`` (still hanging, or ended by
    server shutdown), ``cancelled`` (the client went away), ``abandoned`` (the client
    of a plain answer went away during its ``delay_s``), ``pending`` (in flight).

    Billing truth (what a real provider bills, which the stats record): a stream is
    billed for what was written before it ended (its generation stops with the
    connection); a plain answer is generated whole, so it is billed in full even when
    the client left during its delay (``abandoned``) or its body was cut by a
    ``reset_after_chunks``/``close_after_chunks`` step.
"""

from gateway.mock_provider.app import MockProvider, create_app
from gateway.mock_provider.server import load_script_file, serve

__all__ = ["MockProvider", "create_app", "load_script_file", "serve"]
