"""Providers by ``kind``: the class that speaks each provider API (a registry, so a new
kind is one entry here, not another branch where providers are built)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.config_schema import ProviderConfig
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.openai_compat import OpenAIProvider
from gateway.providers.transport import Transport

Build = Callable[[str, ProviderConfig, str, Transport], Provider]


def _openai(name: str, p: ProviderConfig, key: str, transport: Transport) -> Provider:
    return OpenAIProvider(name, p.base_url, key, transport)


def _anthropic(name: str, p: ProviderConfig, key: str, transport: Transport) -> Provider:
    return AnthropicProvider(name, p.base_url, key, transport, version=p.anthropic_version)


KINDS: Mapping[str, Build] = {"openai": _openai, "anthropic": _anthropic}
