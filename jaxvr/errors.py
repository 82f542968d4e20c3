"""Typed exceptions for bad input.

Every error names the offending input and says what was expected. The CLI
prints ``str(err)`` on one line and exits non-zero.
"""


class JaxvrError(Exception):
  """Base class of every error jaxvr raises on bad input."""


class VideoError(JaxvrError):
  """A video file cannot be used."""


class VideoNotFoundError(VideoError, FileNotFoundError):
  """The video path does not exist."""


class UnreadableVideoError(VideoError):
  """ffmpeg cannot decode the file (not a video, unknown container, corrupt)."""


class EmptyVideoError(VideoError):
  """The file decodes but holds no frames (or none in the requested range)."""


class TruncatedVideoError(VideoError):
  """The file ends early: fewer frames decode than its header promises."""


class ShapeError(JaxvrError, ValueError):
  """An array has the wrong rank, shape or dtype."""


class SizeError(JaxvrError, ValueError):
  """A size cannot work (does not divide into chunks, too small, ...)."""


class ConfigError(JaxvrError, ValueError):
  """A configuration value is impossible (e.g. no visible token remains)."""


class CodecError(JaxvrError):
  """An ffmpeg encode or decode failed."""


class CheckpointError(JaxvrError):
  """A checkpoint is missing, incomplete or does not fit the model."""


class TrainingDivergedError(JaxvrError, FloatingPointError):
  """A training loss or gradient became NaN or infinite."""


class IncompleteResultsError(JaxvrError):
  """Results to merge are missing (a shard of the run has not finished)."""


def check_shape(name: str, array, rank: int | None = None,
                last: int | None = None, dtype=None) -> None:
  """Raises ShapeError unless ``array`` has the given rank/last dim/dtype.

  Args:
    name: how the caller calls the array, used in the message.
    array: any object with ``shape`` and ``dtype``.
    rank: expected ``ndim`` (None = any).
    last: expected size of the last axis (None = any).
    dtype: expected numpy dtype kind or dtype (None = any).
  """
  shape = tuple(getattr(array, 'shape', ()))
  if rank is not None and len(shape) != rank:
    raise ShapeError(f'{name}: expected a rank-{rank} array, got shape {shape}')
  if last is not None and (not shape or shape[-1] != last):
    raise ShapeError(f'{name}: expected last axis of size {last}, got shape {shape}')
  if dtype is not None:
    import numpy as np
    if np.dtype(array.dtype) != np.dtype(dtype):
      raise ShapeError(f'{name}: expected dtype {np.dtype(dtype)}, got {array.dtype}')
