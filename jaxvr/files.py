"""Writes that cannot lose data: the one home for creating output files.

Every file jaxvr writes goes through :func:`atomic_open` (or the small
wrappers below): the content goes to a temporary file in the destination's
folder, is flushed and fsynced, then renamed over the destination, and the
folder is fsynced so the rename itself survives a crash. A reader therefore
sees either the old file or the complete new one, never a partial one, and a
failure while writing leaves no file behind.

Appends (:func:`append_line`) cannot be atomic in that sense; they write one
whole line per call and fsync it, and readers of append-only logs skip a torn
last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np


def _fsync_dir(directory: str) -> None:
  # Directories cannot be opened for fsync on every platform (Windows).
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = 'wb') -> Iterator[IO]:
  """Opens a temporary file that replaces ``path`` when the block succeeds.

  Args:
    path: destination; its folder is created if missing.
    mode: 'wb' or 'w' (text, UTF-8).

  Yields:
    The open temporary file. If the block raises, the temporary file is
    removed and ``path`` is untouched.
  """
  if mode not in ('wb', 'w'):
    raise ValueError(f'atomic_open: mode must be "wb" or "w", got {mode!r}')
  path = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix=f'.{os.path.basename(path)}.',
                             suffix='.tmp')
  try:
    kw = {'encoding': 'utf-8'} if mode == 'w' else {}
    with os.fdopen(fd, mode, **kw) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    # mkstemp creates 0600 files; give the result the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  _fsync_dir(directory)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Atomically replaces ``path`` with ``data``."""
  with atomic_open(path, 'wb') as f:
    f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
  """Atomically replaces ``path`` with ``text`` (UTF-8)."""
  with atomic_open(path, 'w') as f:
    f.write(text)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2,
               sort_keys: bool = False) -> None:
  """Atomically writes strict JSON (NaN and infinities are refused)."""
  write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys,
                              allow_nan=False) + '\n')


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
  """Atomically writes one array in ``.npy`` format."""
  with atomic_open(path, 'wb') as f:
    np.save(f, array, allow_pickle=False)


def save_npz(path: str | os.PathLike, compressed: bool = False,
             **arrays: np.ndarray) -> None:
  """Atomically writes named arrays in ``.npz`` format."""
  save = np.savez_compressed if compressed else np.savez
  with atomic_open(path, 'wb') as f:
    save(f, **arrays)


def append_line(path: str | os.PathLike, line: str) -> None:
  """Appends one line (a newline is added) and fsyncs it.

  Args:
    path: an append-only log; created (with its folder) if missing.
    line: text without a newline.
  """
  if '\n' in line:
    raise ValueError('append_line: the line must not contain a newline')
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'a', encoding='utf-8') as f:
    f.write(line + '\n')
    f.flush()
    os.fsync(f.fileno())
