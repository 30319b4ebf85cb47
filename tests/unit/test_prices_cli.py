"""``spendgate prices MODEL...``: what a model is charged, and where the price came from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import genai_prices
import pytest
import yaml

from gateway.cli import main

VERSION = genai_prices.__version__
CONFIG = {
    "store": "sqlite:///tmp/x.db",
    "providers": {
        "oa": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "UNSET"},
    },
    "models": {
        "fast": {"provider": "oa", "upstream_model": "gpt-4o-mini-2024-07-18"},
        "own": {
            "provider": "oa",
            "upstream_model": "my-finetune",
            "max_output_tokens": 777,
            "price": {
                "input_per_mtok": "1.5",
                "output_per_mtok": 2,
                "tiers": [{"above_input_tokens": 1000, "input_per_mtok": 3, "output_per_mtok": 4}],
            },
        },
    },
}


@pytest.fixture(autouse=True)
def no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPENDGATE_CONFIG", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["prices", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bare_model_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "claude-sonnet-4-5-20250929")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "claude-sonnet-4-5-20250929: claude-sonnet-4-5-20250929 at anthropic"
    assert lines[1].startswith(
        f"  price from      genai-prices {VERSION}, anthropic/claude-sonnet-4-5 "
        "(for claude-sonnet-4-5-20250929), as of "
    )
    assert lines[2] == (
        "  USD per MTok    input  cached input  cache write  cache write 1h  output"
    )
    assert lines[3].split() == ["base", "3.00", "0.30", "3.75", "6.00", "15.00"]
    assert lines[4].split() == ["input", ">", "200000", "6.00", "0.60", "7.50", "12.00", "22.50"]
    assert lines[5:] == ["  max output      64000 tokens", "  context window  200000 tokens"]


def test_models_of_a_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    code, out, err = run(capsys, "--config", str(path), "own", "fast")
    assert (code, err) == (0, "")  # no secret needed to show prices
    own, fast = out.split("\nfast: ")
    assert own.splitlines() == [
        "own: my-finetune at provider oa (openai)",
        "  price from      config",
        "  USD per MTok    input  cached input  cache write  cache write 1h  output",
        "  base            1.50   1.50          1.50         1.50            2.00",
        "  input > 1000    3.00   3.00          3.00         3.00            4.00",
        "  max output      777 tokens",
        "  context window  unknown",
    ]
    assert fast.startswith("gpt-4o-mini-2024-07-18 at provider oa (openai)\n")
    assert "openai/gpt-4o-mini (for gpt-4o-mini-2024-07-18)" in fast
    assert "0.15   0.075" in fast and "16384 tokens" in fast and "128000 tokens" in fast


def test_unknown_models_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "gpt-4o", "my-llama")
    assert code == 1 and out.startswith("gpt-4o: gpt-4o at openai\n")
    assert err == (
        f"spendgate prices: unknown model 'my-llama': genai-prices {VERSION} has no price for "
        "'my-llama' at provider 'openai'; a config must set its models.<name>.price\n"
    )
    code, _, err = run(capsys, "--provider", "anthropic", "gpt-4o")
    assert code == 1 and "at provider 'anthropic'" in err
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "gpt-4o")
    assert code == 1 and err == f"spendgate prices: no model named 'gpt-4o' in {path}\n"


def test_an_invalid_config_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("models: {x: {provider: nope, upstream_model: x}}", encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "x")
    assert code == 2 and err.startswith(f"{path}: invalid\n")


def test_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPENDGATE_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "prices", "gpt-4o"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[3].split() == ["base", "2.50", "1.25", "2.50", "2.50", "10.00"]
