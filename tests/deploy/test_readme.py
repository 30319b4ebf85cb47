"""What a newcomer meets first tells the truth: the README's quickstart works after
exactly what it installs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.process import spendgate

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _quickstart() -> tuple[str, str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    install = re.search(r"```sh\n(.*?)\n```", section, re.S)
    snippet = re.search(r"```python\n(.*?)\n```", section, re.S)
    assert install and snippet
    return install.group(1), snippet.group(1)


def test_the_snippet_imports_only_what_the_install_command_installs() -> None:
    install, snippet = _quickstart()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in deps}
    installed |= {word.lower() for word in install.split("&&")[0].split()[2:] if word != "."}
    imported = set()
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= installed, f"{imported - installed} is not installed"


def test_the_snippet_runs_against_the_demo() -> None:
    _, snippet = _quickstart()
    with spendgate(["serve", "--demo"], {"SPENDGATE_STORE": ""}) as (_, url):
        port = url.rsplit(":", 1)[1]
        code = snippet.replace("127.0.0.1:4000", f"127.0.0.1:{port}")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"ChatCompletion" in done.stdout
