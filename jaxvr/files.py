"""Writes that cannot lose data: the one home for creating output files.

Every file jaxvr writes goes through :func:`atomic_open` (or the small
wrappers below, or :func:`atomic_path` for writers that need a file name,
such as ffmpeg): the content goes to a temporary file in the destination's
folder, is flushed and fsynced, then renamed over the destination, and the
folder is fsynced so the rename itself survives a crash. A reader therefore
sees either the old file or the complete new one, never a partial one, and a
failure while writing leaves no file behind. :func:`atomic_dir` does the
same for a folder written as a whole (a parameter export).

Appends (:func:`append_line`) cannot be atomic in that sense; they write one
whole line per call and fsync it, and readers of append-only logs skip a torn
last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
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


def _fsync_file(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _umask_permissions(path: str, mode: int) -> None:
  # mkstemp/mkdtemp create private entries; give the result the usual ones.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """A temporary file name that replaces ``path`` when the block succeeds.

  For writers that need a name rather than an open file (an ffmpeg
  subprocess, a library that writes by path). The temporary file exists
  (empty) when the block starts and ends in the destination's suffix, so a
  tool that picks the format from the name still works.

  Args:
    path: destination; its folder is created if missing.

  Yields:
    The temporary path (a string). If the block raises, it is removed and
    ``path`` is untouched.
  """
  path = os.path.abspath(os.fspath(path))
  directory, name = os.path.split(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{name}.',
                             suffix='.tmp' + os.path.splitext(name)[1])
  os.close(fd)
  try:
    yield tmp
    _fsync_file(tmp)
    _umask_permissions(tmp, 0o666)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  _fsync_dir(directory)


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
  kw = {'encoding': 'utf-8'} if mode == 'w' else {}
  with atomic_path(path) as tmp, open(tmp, mode, **kw) as f:
    yield f


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """A temporary folder that takes the place of folder ``path`` on success.

  The block fills a fresh sibling folder. On success, entries of the old
  folder that the new one lacks are copied into it (the swap replaces what
  the block wrote and keeps the rest), the old folder is renamed aside, the
  new one renamed into place, and the old one deleted. The old folder is
  not touched before the swap, so a failure or a crash at any point leaves
  a complete folder, old or new, at ``path`` (or, between the two renames,
  the old one beside it under a ``.old`` name).

  Args:
    path: destination folder; need not exist.

  Yields:
    The temporary folder. If the block raises, it is deleted.

  Raises:
    NotADirectoryError: ``path`` exists and is not a folder.
  """
  path = os.path.abspath(os.fspath(path))
  parent, name = os.path.split(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotADirectoryError(f'{path}: exists and is not a folder')
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.', suffix='.tmp')
  try:
    yield pathlib.Path(tmp)
    _umask_permissions(tmp, 0o777)
    if os.path.isdir(path):
      _copy_missing(path, tmp)
    _fsync_dir(tmp)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  aside = None
  if os.path.isdir(path):
    aside = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.', suffix='.old')
    os.rename(path, os.path.join(aside, name))
  try:
    os.rename(tmp, path)
  except BaseException:
    if aside is not None:  # put the old folder back; keep the new one aside
      os.rename(os.path.join(aside, name), path)
      os.rmdir(aside)
    raise
  _fsync_dir(parent)
  if aside is not None:
    shutil.rmtree(aside)


def _copy_missing(source: str, target: str) -> None:
  """Copies the entries of folder ``source`` that ``target`` lacks."""
  for entry in os.listdir(source):
    src, dst = os.path.join(source, entry), os.path.join(target, entry)
    if os.path.lexists(dst):
      continue
    if os.path.isdir(src) and not os.path.islink(src):
      shutil.copytree(src, dst, symlinks=True)
    else:
      shutil.copy2(src, dst, follow_symlinks=False)


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
