"""Frames in and out of the native module.

In: a polars or pyarrow frame (anything with ``__arrow_c_stream__``), a
pandas frame (through pyarrow) or a file path. Frames are handed over through
the Arrow PyCapsule stream interface and written to an Arrow IPC file in a
private temporary directory, which the same readers as the command line then
read: a frame and the file it came from give the same result.

Out: polars when it is installed, else pyarrow.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import _reelkit


def _polars():
    try:
        import polars as pl
    except ImportError:
        return None
    return pl


def to_frame(stream: Any):
    """A polars DataFrame of an Arrow stream (pyarrow Table without polars)."""
    import pyarrow as pa

    table = pa.RecordBatchReader.from_stream(stream).read_all()
    pl = _polars()
    return pl.from_arrow(table, rechunk=False) if pl is not None else table


def read_table(path: os.PathLike | str):
    """A Parquet or Arrow file as a frame (polars, else pyarrow)."""
    pl = _polars()
    p = str(path)
    if pl is not None:
        return pl.read_parquet(p) if p.endswith(".parquet") else pl.read_ipc(p)
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    return pq.read_table(p) if p.endswith(".parquet") else feather.read_table(p)


def frame_of_rows(rows: list[dict]):
    """A frame of JSON rows."""
    pl = _polars()
    if pl is not None:
        return pl.DataFrame(rows, infer_schema_length=None)
    import pyarrow as pa

    return pa.Table.from_pylist(rows)


def _arrow_if_pandas(obj: Any) -> Any:
    """A pandas frame as a pyarrow table (pandas exports no Arrow stream);
    anything else as it is."""
    if type(obj).__module__.startswith("pandas"):
        import pyarrow as pa

        return pa.Table.from_pandas(obj, preserve_index=False)
    return obj


class Inputs:
    """A temporary directory the inputs of one call are written to; errors
    that name a temporary file are rewritten to name the argument."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="reelkit-")
        self.names: dict[str, str] = {}

    def __enter__(self) -> "Inputs":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        shutil.rmtree(self.dir, ignore_errors=True)
        if isinstance(err, (ValueError, OSError, KeyError)) and not isinstance(err, FileNotFoundError):
            message = str(err.args[0]) if err.args else str(err)
            renamed = message
            for path, name in self.names.items():
                renamed = renamed.replace(path, f"the `{name}` frame")
            if renamed != message:
                raise type(err)(renamed) from None
        return False

    def path(self, obj: Any, name: str) -> str:
        """The file of `obj`: its own path, or the frame written out."""
        if isinstance(obj, (str, os.PathLike)):
            p = Path(obj)
            if not p.exists():
                raise FileNotFoundError(f"`{name}`: no such file: {p}")
            return str(p)
        obj = _arrow_if_pandas(obj)
        target = os.path.join(self.dir, f"{name}.arrow")
        _reelkit.write_frame(obj, name, target)
        self.names[target] = name
        return target

    def frame(self, obj: Any, name: str) -> Any:
        """`obj` for a call that scans frames in memory: a path as a string,
        a pandas frame through pyarrow, any other frame as it is."""
        if isinstance(obj, (str, os.PathLike)):
            return self.path(obj, name)
        return _arrow_if_pandas(obj)

    def out(self, name: str) -> str:
        """A path for an output inside the temporary directory."""
        return os.path.join(self.dir, name)
