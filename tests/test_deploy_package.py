"""The deployment package holds the app and nothing else: built as Core Tools and azd build
it (the project folder minus ``.funcignore``'s patterns, with ``.gitignore``'s semantics),
it is small, and the function app imports from it alone."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_PACKAGE_BYTES = 3 * 1024 * 1024


def package_files(root: Path) -> list[str]:
    spec = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    files = []
    for folder, dirs, names in os.walk(root):
        relative = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if not spec.match_file(f"{(relative / d).as_posix()}/")]
        files += [(relative / name).as_posix() for name in names if not spec.match_file((relative / name).as_posix())]
    return sorted(files)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("package") / "app.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for name in package_files(ROOT):
            out.write(ROOT / name, name)
    return archive


def test_the_package_holds_the_app_and_no_tools(package: Path) -> None:
    names = zipfile.ZipFile(package).namelist()
    for needed in ("function_app.py", "host.json", "requirements.txt", "exporter/__init__.py", "exporter/cli.py"):
        assert needed in names
    tops = {name.split("/", 1)[0] for name in names}
    assert tops <= {"function_app.py", "host.json", "requirements.txt", "exporter", "exports.json"}, tops
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert package.stat().st_size < MAX_PACKAGE_BYTES
    assert sum(info.file_size for info in zipfile.ZipFile(package).infolist()) < MAX_PACKAGE_BYTES


def test_the_function_app_imports_from_the_unpacked_package_alone(package: Path, tmp_path: Path) -> None:
    """With requirements.txt installed (this venv) and the repository out of reach: no
    editable install, no current directory, nothing but the unpacked package on the path."""
    unpacked = tmp_path / "wwwroot"
    zipfile.ZipFile(package).extractall(unpacked)
    code = ("import sys; sys.path[:] = [p for p in sys.path if 'site-packages' in p or 'lib/python' in p]; "
            f"sys.path.insert(0, {str(unpacked)!r}); "
            "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in type(f).__module__]; "
            "import function_app, exporter; "
            "print(exporter.__file__); print(len(function_app.app.get_functions()))")
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    location, functions = result.stdout.split()
    assert Path(location).is_relative_to(unpacked) and int(functions) >= 7
