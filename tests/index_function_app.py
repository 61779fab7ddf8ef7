"""Indexes function_app.py with the Python worker's own loader, the way the host does.

Run as a script in a subprocess (``app.get_functions()`` works once per process). Prints
one JSON document: each function's name and raw bindings. Any indexing error (a wrong
``arg_name``, a bad annotation, a duplicate name) makes it exit non-zero with the error.
The worker's gRPC ``protos`` module is replaced by a stand-in that records what the
loader builds from it; nothing else is faked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class _Message(SimpleNamespace):
    """Stands in for any protobuf message class: keeps its keyword arguments."""


class _BindingInfo(_Message):
    in_, out, inout = 0, 1, 2
    undefined, string, binary, stream = 0, 1, 2, 3


PROTOS = SimpleNamespace(BindingInfo=_BindingInfo, RpcFunctionMetadata=_Message, RpcRetryOptions=_Message)


def main(app_dir: str) -> int:
    from azure_functions_runtime import functions, loader
    from azure_functions_runtime.bindings import meta

    sys.path.insert(0, app_dir)
    meta.load_binding_registry()
    indexed = loader.index_function_app(str(Path(app_dir) / "function_app.py"))
    metadata, _ = loader.process_indexed_function(PROTOS, functions.Registry(), indexed, app_dir)
    result: list[dict[str, Any]] = []
    for item in metadata:
        result.append({"name": item.name, "bindings": [json.loads(raw) for raw in item.raw_bindings]})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
