"""Report files, written atomically: a reader never sees a half-written one.

The writing itself is :func:`mtdqn.io.atomic_write` (a temp file beside the
target, then ``os.replace``), the one place every mtdqn file goes through.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtdqn.io import atomic_write, write_parquet

__all__ = ["write_bytes", "write_text", "write_frame", "remove_stale"]


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, creating the parent folder."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text, atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_frame(folder: Path, stem: str, df: pd.DataFrame) -> list[Path]:
    """`stem.parquet` and `stem.csv` under `folder`, both atomically; returns the paths."""
    df = df.reset_index(drop=True)
    write_parquet(folder / f"{stem}.parquet", df)
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
