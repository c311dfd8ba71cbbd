"""Versioned model files under ``KUNDE_DATA_DIR/models/personalisation``.

A version is a folder of ``.npy`` arrays plus ``manifest.json`` with each file's SHA-256;
``CURRENT`` names the version to serve and is replaced atomically (``os.replace``), so a
reader sees the old or the new version, never half of one. Large arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kunde.personalisation.models.recommend import ModelSet

MMAP = {"ease_weights", "also_idx", "also_sim", "together_idx", "together_sim",
        "segment_popularity"}
FIELDS = ("items", "categories", "popularity", "segment_names", "segment_popularity",
          "also_idx", "also_sim", "together_idx", "together_sim", "ease_items", "ease_weights")
KEEP_VERSIONS = 3


class CorruptModel(Exception):
    """A model version is missing a file or a file does not match its checksum."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def new_version(self, now: datetime) -> str:
        return now.strftime("v%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)

    def save(self, version: str, arrays: dict[str, NDArray[Any]], summary: dict[str, Any]
             ) -> Path:
        """Write a version completely, then point CURRENT at it (atomic swap)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files = {}
        for name in FIELDS:
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            files[name] = _sha256(path)
        manifest = {"version": version, "files": files, "summary": summary}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        final = self.root / version
        os.replace(tmp, final)
        self._point_current(version)
        self._prune()
        return final

    def _point_current(self, version: str) -> None:
        pointer = self.root / "CURRENT.tmp"
        pointer.write_text(version)
        os.replace(pointer, self.root / "CURRENT")

    def current(self) -> str | None:
        try:
            return (self.root / "CURRENT").read_text().strip() or None
        except FileNotFoundError:
            return None

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted((p.name for p in self.root.iterdir()
                       if p.is_dir() and p.name.startswith("v")), reverse=True)

    def load(self, version: str) -> tuple[ModelSet, dict[str, Any]]:
        """Load and verify a version; raises `CorruptModel` on any missing or damaged file."""
        folder = self.root / version
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            arrays: dict[str, Any] = {}
            for name in FIELDS:
                path = folder / f"{name}.npy"
                if _sha256(path) != manifest["files"][name]:
                    raise CorruptModel(f"{version}/{name}.npy does not match its checksum")
                arrays[name] = np.load(path, mmap_mode="r" if name in MMAP else None,
                                       allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptModel(f"{version}: {exc}") from exc
        arrays["segment_names"] = tuple(str(s) for s in arrays["segment_names"])
        arrays["ease_items"] = np.asarray(arrays["ease_items"], np.int64)
        return ModelSet.build(version=version, **arrays), dict(manifest.get("summary", {}))

    def _prune(self) -> None:
        current = self.current()
        for old in self.versions()[KEEP_VERSIONS:]:
            if old != current:
                shutil.rmtree(self.root / old, ignore_errors=True)


def popularity_only(version: str, skus: list[str], categories: list[str],
                    counts: list[float]) -> ModelSet:
    """A model set with popularity alone: what is served before any training succeeded."""
    n = len(skus)
    empty_i = np.full((n, 1), -1, np.int32)
    empty_s = np.zeros((n, 1), np.float32)
    return ModelSet.build(
        version=version, items=np.asarray(skus, dtype=np.str_),
        categories=np.asarray(categories, dtype=np.str_),
        popularity=np.asarray(counts, np.float32), segment_names=(),
        segment_popularity=np.zeros((0, n), np.float32), also_idx=empty_i, also_sim=empty_s,
        together_idx=empty_i, together_sim=empty_s, ease_items=np.zeros(0, np.int64),
        ease_weights=np.zeros((0, 0), np.float32))
