"""The code imports its packages only by their installed names (smtp_discovery.schemas, ...).

In a checkout the role folders are also importable by their bare folder names (the repository
root is on the path), and an import by such a name loads a second copy of the module, with
classes that are not the first copy's. The installed package has no such names, so that code
would fail there.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("schemas", "ingest", "streams", "sinks", "jobs", "admin")


def test_no_module_imports_a_role_folder_by_its_bare_name() -> None:
    offenders = []
    for folder in (*FOLDERS, "smtp_discovery", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                    for name in names
                    if name.split(".")[0] in FOLDERS
                ]
    assert not offenders, "import smtp_discovery.<folder> instead: " + ", ".join(offenders)
