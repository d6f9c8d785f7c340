"""A stand-in daemon for container tests: starts the zygote first (as cri/cli.py does), then
serves `Runtime` calls read as JSON lines on stdin, answering each with one JSON line.

    python -m tests.runtime.runtime_driver STATE_ROOT
    → {"method": "create", "args": ["id", "/bundle"], "kwargs": {"log_path": "/x.log"}}
    ← {"result": {...ContainerState...}} or {"error": "ContainerError", "message": "..."}
"""

from __future__ import annotations

import sys

import runtime.entry_points  # noqa: F401  (registers the zygote entry points)
from runtime.zygote import Zygote


def main() -> int:
    zygote = Zygote()
    # Everything below may start threads; the fork server already exists.
    import dataclasses
    import json
    from enum import Enum
    from pathlib import Path
    from typing import Any

    from runtime.cgroups import from_oci
    from runtime.container import Runtime

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    rt = Runtime(Path(sys.argv[1]), zygote)
    print(json.dumps({"ready": True, "zygote": zygote.pid}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        kwargs = request.get("kwargs", {})
        args = list(request.get("args", []))
        if request["method"] == "update":
            args[1] = from_oci(args[1])
        if request["method"] == "create":
            args[1] = Path(args[1])
            if kwargs.get("log_path"):
                kwargs["log_path"] = Path(kwargs["log_path"])
        try:
            result = getattr(rt, request["method"])(*args, **kwargs)
            answer: dict[str, Any] = {"result": plain(result)}
        except Exception as exc:
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer), flush=True)
    zygote.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
