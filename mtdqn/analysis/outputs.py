"""Atomic file writes: a reader never sees a half-written report file.

Each file is written to `<name>.tmp` in the same folder and moved into place
with `os.replace`, which is atomic on one filesystem. No fsync: a report is
cheap to rebuild, so crash durability is not worth the latency.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["write_bytes", "write_text", "write_frame", "remove_stale"]


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text, atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_frame(folder: Path, stem: str, df: pd.DataFrame) -> list[Path]:
    """`stem.parquet` and `stem.csv` under `folder`, both atomically; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    df = df.reset_index(drop=True)
    tmp = folder / f"{stem}.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, folder / f"{stem}.parquet")
    csv = write_text(folder / f"{stem}.csv", df.to_csv(index=False))
    return [folder / f"{stem}.parquet", csv]


def remove_stale(folder: Path, keep: list[Path], suffixes: tuple[str, ...]) -> None:
    """Delete files with `suffixes` in `folder` that this run did not write (left from an older run)."""
    if not folder.exists():
        return
    kept = {p.resolve() for p in keep}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in suffixes and p.resolve() not in kept:
            p.unlink()
