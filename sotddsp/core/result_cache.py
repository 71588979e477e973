"""A cache of evaluation results: one JSON record per key (a dict of hashes and settings), written
atomically, so a rerun, also after a kill, computes only what changed. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sotddsp.core.atomic_files import atomic_write_text

__all__ = ["ResultCache", "file_sha256"]


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ResultCache:
    """JSON records in ``directory``, one per key; written atomically, unreadable ones ignored.

    ``get(key)`` returns the record stored under ``key`` (a JSON-serializable dict), or None when
    there is none, it is unreadable, or it lacks "metrics"; ``put(key, value)`` stores
    ``{"key": key, **value}`` in ``<directory>/<sha256 of key>.json``.
    """

    directory: Path

    def _path(self, key: dict[str, Any]) -> Path:
        text = json.dumps(key, sort_keys=True)
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or "metrics" not in record:
            return None
        return record

    def put(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        atomic_write_text(self._path(key), json.dumps({"key": key, **value}, indent=1) + "\n")
