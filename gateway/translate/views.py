"""Any client request as the chat request it means, for counting its prompt (pure).

The tokenizer's recipe counts chat messages; a Responses or Messages request is counted
through its translation. One that cannot be translated is counted as its whole body's
text, which is never less than what it holds.
"""

from __future__ import annotations

import orjson

from gateway.translate import messages_chat, responses_chat
from gateway.translate.common import JSON, TranslationError


def chat_view(api: str, body: JSON) -> JSON:
    if api == "chat":
        return body
    try:
        if api == "responses":
            lenient = {k: v for k, v in body.items() if k not in responses_chat.STATEFUL}
            lenient.pop("store", None)
            return responses_chat.to_chat_request(lenient)
        if api == "messages":
            return messages_chat.to_chat_request(body)
    except TranslationError:
        pass
    return {"messages": [{"role": "user", "content": orjson.dumps(body).decode()}]}
