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


class PayloadError(JaxvrError, ValueError):
  """Payload bytes are malformed: bad magic or version, a header field out
  of range or inconsistent with the byte length, or an inner stream that
  does not decompress or decode to what the header promises."""


class OutputError(JaxvrError, OSError):
  """An output path cannot be written (folder not writable, a directory)."""


class CheckpointError(JaxvrError):
  """A checkpoint is missing, incomplete or does not fit the model."""


class TrainingDivergedError(JaxvrError, FloatingPointError):
  """A training loss or gradient became NaN or infinite."""


class IncompleteResultsError(JaxvrError):
  """Results to merge are missing (a shard of the run has not finished)."""


def one_line(err: BaseException) -> str:
  """``err`` and the errors that caused it, on one line (for a CLI)."""
  parts = []
  while err is not None:
    text = ' '.join(str(err).split())
    if text and not any(text in seen for seen in parts):
      parts.append(text)
    err = err.__cause__
  return ': '.join(parts) or 'unknown error'

