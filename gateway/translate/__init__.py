"""Translators between the client APIs and the provider APIs, one module per pair."""
