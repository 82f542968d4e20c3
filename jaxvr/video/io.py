"""Video files in and out, on top of :mod:`jaxvr.video.ffmpeg`.

Reading streams frames from an ffmpeg subprocess, so a long file is never
held whole unless asked for, and decodes coded frames only
(``-fps_mode passthrough``: no duplicated frames for variable-rate files).
Anything ffmpeg reads works: mp4, avi, mkv, webm, gif, y4m, image sequences
(``frame_%03d.png``).

Writing goes to a temporary file next to the target and is renamed into
place, so an interrupted write never leaves a half-written video.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from jaxvr import errors, files, payloads
from jaxvr.video import ffmpeg
from jaxvr.video.ffmpeg import VideoInfo
from jaxvr.video.transforms import (
  center_crop,
  check_frames,
  frame_block,
  pad_even,
  resize_short_side_pil,
)


def check_path(path) -> str:
  """``path`` as a string if it names a non-empty file or an image sequence
  with a first frame; else VideoNotFoundError, UnreadableVideoError (a
  directory) or EmptyVideoError (0 bytes). No ffmpeg run."""
  path = os.fspath(path)
  if ffmpeg.is_pattern(path):
    try:
      first, alt = path % 0, path % 1
    except (TypeError, ValueError):
      raise errors.VideoNotFoundError(
          f'{path}: no such file, and not an image-sequence pattern with one '
          'integer field such as frame_%03d.png') from None
    if not (os.path.exists(first) or os.path.exists(alt)):
      raise errors.VideoNotFoundError(
          f'{path}: no such file, nor an image sequence (looked for {first})')
    return path
  if not os.path.exists(path):
    raise errors.VideoNotFoundError(f'{path}: no such file')
  if os.path.isdir(path):
    raise errors.UnreadableVideoError(f'{path}: is a directory, expected a video file')
  if os.path.getsize(path) == 0:
    raise errors.EmptyVideoError(f'{path}: file is empty (0 bytes)')
  return path


def probe_video(path) -> VideoInfo:
  """Reads a file's size, frame rate, duration and coded frame count.

  The frame count comes from the container's packets (no decoding), so it
  is exact for coded frames and fast.

  Raises:
    VideoNotFoundError, UnreadableVideoError, EmptyVideoError,
    TruncatedVideoError.
  """
  info = ffmpeg.probe(check_path(path))
  side = payloads.LIMITS.max_side
  if not (0 < info.width <= side and 0 < info.height <= side):
    raise errors.UnreadableVideoError(
        f'{info.path}: frames of {info.width}x{info.height}, expected sides '
        f'of 1..{side} (jaxvr.payloads.LIMITS)')
  return info


def iter_frames(path, *, start: int = 0, stride: int = 1,
                max_frames: int | None = None, allow_truncated: bool = False,
                plane: str = 'rgb') -> Iterator[np.ndarray]:
  """Streams coded frames ``start, start+stride, ...`` as uint8 ``[H, W, 3]``.

  With ``plane='y'`` it yields the decoded luma plane ``[H, W]`` exactly as
  coded (limited-range Y, no colour conversion): the input convention of
  the ST-RRED/SSIM references.

  Args:
    path: a video file or an ffmpeg image-sequence pattern.
    start: index of the first frame to yield (0-based, in coded frames).
    stride: temporal stride (2 keeps every other frame).
    max_frames: stop after this many yielded frames (None: to the end).
    allow_truncated: yield what decodes from a damaged file instead of
      raising TruncatedVideoError at the end.
  """
  path = check_path(path)
  if start < 0 or stride < 1 or (max_frames is not None and max_frames < 1):
    raise errors.ConfigError(
        f'{path}: need start >= 0, stride >= 1, max_frames >= 1 or None; got '
        f'start={start}, stride={stride}, max_frames={max_frames}')
  if plane not in ('rgb', 'y'):
    raise errors.ConfigError(f"plane: expected 'rgb' or 'y', got {plane!r}")
  info = probe_video(path)
  h, w = info.height, info.width
  if plane == 'rgb':
    frame_bytes, keep, shape, pix = h * w * 3, h * w * 3, (h, w, 3), 'rgb24'
  else:
    frame_bytes = h * w + 2 * ((h + 1) // 2) * ((w + 1) // 2)
    keep, shape, pix = h * w, (h, w), 'yuv420p'
  with ffmpeg.decoding(path, pix) as out:
    index = yielded = 0
    while max_frames is None or yielded < max_frames:
      buf = out.read(frame_bytes)
      if len(buf) < frame_bytes:
        break
      if index >= start and (index - start) % stride == 0:
        yield np.frombuffer(buf[:keep], np.uint8).reshape(shape)
        yielded += 1
      index += 1
    finished = max_frames is None or yielded < max_frames
  stderr = out.stderr
  if not finished:
    return
  if index == 0:
    raise (ffmpeg.classify(path, stderr) if stderr.strip() else
           errors.EmptyVideoError(f'{path}: decodes to 0 frames'))
  if stderr.strip() and not allow_truncated:
    raise errors.TruncatedVideoError(
        f'{path}: decoding stopped with errors after {index} frames (the '
        f'header promises about {max(info.n_frames, round(info.duration * info.fps))}'
        f'): {stderr.strip().splitlines()[-1].strip()}')
  if yielded == 0:
    raise errors.EmptyVideoError(
        f'{path}: no frames in the requested range (start={start}, '
        f'stride={stride}; the file has {index} frames)')


def read_video(path, *, max_frames: int | None = None, start: int = 0,
               stride: int = 1, allow_truncated: bool = False) -> np.ndarray:
  """Reads a video into uint8 ``[T, H, W, 3]`` RGB.

  Args:
    path: any file ffmpeg reads (mp4, avi, mkv, webm, gif, y4m, or an
      image-sequence pattern such as ``dir/frame_%03d.png``).
    max_frames: keep at most this many frames.
    start: first coded frame to keep.
    stride: keep every ``stride``-th frame from ``start``.
    allow_truncated: return the frames that decode from a damaged file.

  Raises:
    VideoNotFoundError: no such path.
    UnreadableVideoError: not a video ffmpeg can decode.
    EmptyVideoError: zero frames, or none in the requested range.
    TruncatedVideoError: the file ends early or is damaged.
  """
  frames = list(iter_frames(path, start=start, stride=stride,
                            max_frames=max_frames,
                            allow_truncated=allow_truncated))
  return np.stack(frames)


def read_luma(path, *, max_frames: int | None = None, start: int = 0,
              stride: int = 1) -> np.ndarray:
  """Reads the decoded Y plane, uint8 ``[T, H, W]``, exactly as coded.

  This is the luma convention of the metric references (limited-range Y
  straight from the decoder). For RGB arrays use ``jaxvr.video.luma``.
  """
  return np.stack(list(iter_frames(path, start=start, stride=stride,
                                   max_frames=max_frames, plane='y')))


def read_clip(path, frames: int, *, start: int = 0, stride: int = 1,
              size: int | tuple[int, int] | None = None
              ) -> tuple[np.ndarray, float]:
  """An evaluation clip of a video file, cut the one way jaxvr cuts them.

  ``frames`` frames from ``start`` (every ``stride``-th), then, with
  ``size``, the short side resized with Pillow's Lanczos filter (the
  codec-anchor procedure, :func:`jaxvr.video.transforms.resize_short_side_pil`)
  and the centred crop kept. ``jaxvr compare``, the CLI commands and the
  validation clips of training all load clips with it.

  Args:
    path: a video file or an image-sequence pattern.
    frames: the most frames to keep.
    start: first coded frame.
    stride: temporal stride.
    size: ``s`` for an ``s x s`` clip (short side ``s``, centre crop), or
      ``(h, w)`` (short side ``max(h, w)``, centred ``h x w`` crop); None
      keeps the native size.

  Returns:
    ``(uint8 [T, H, W, 3], fps)``: the file's frame rate, 24 when it has
    none.
  """
  info = probe_video(path)
  clip = read_video(path, max_frames=frames, start=start, stride=stride)
  if size:
    size = (int(size),) * 2 if np.ndim(size) == 0 else tuple(size)
    clip = np.asarray(center_crop(resize_short_side_pil(clip, max(size)), size))
  return clip, (info.fps or 24.0)


def write_video(path, frames, *, fps: float = 24, lossless: bool = False,
                crf: float = 18, codec: str = 'libx264',
                pix_fmt: str = 'yuv420p') -> int:
  """Writes uint8 RGB frames to ``path`` (mp4/mkv or gif).

  mp4 uses x264 (``crf``, or ``lossless=True`` for ``-qp 0`` yuv444p);
  ``.gif`` uses ffmpeg's palette-based GIF encoder. Odd sizes are fine for
  yuv444p; for yuv420p they are padded by one pixel. ``frames`` may be an
  iterator of blocks: they are streamed to the encoder one at a time, so a
  long video is never held in memory (GIF excepted: its palette needs
  every frame). The file appears complete or not at all.

  Args:
    path: output file.
    frames: uint8 ``[T, H, W, 3]``, or an iterable of ``[H, W, 3]`` frames
      or ``[b, H, W, 3]`` blocks of one size.
    fps, lossless, crf, codec, pix_fmt: of the encode.

  Returns:
    The number of bytes written.
  """
  path = os.fspath(path)
  blocks = [frames] if hasattr(frames, 'shape') else frames
  if path.lower().endswith('.gif'):
    data = _encode_gif(check_frames(
        np.concatenate([frame_block(b, None) for b in blocks])), fps)
    files.write_bytes(path, data)
    return len(data)
  if lossless:
    pix_fmt = 'yuv444p' if pix_fmt == 'yuv420p' else pix_fmt
  elif pix_fmt == 'yuv420p':
    blocks = (pad_even(frame_block(b, None)) for b in blocks)
  with files.atomic_path(path) as tmp:
    ffmpeg.encode_file(blocks, tmp, codec, crf=None if lossless else crf,
                       lossless=lossless, pix_fmt=pix_fmt, fps=fps)
  return os.path.getsize(path)


def _encode_gif(frames: np.ndarray, fps: float) -> bytes:
  t, h, w, _ = frames.shape
  with tempfile.TemporaryDirectory(prefix='jaxvr_gif_') as tmp:
    out = os.path.join(tmp, 'out.gif')
    ffmpeg.run(
        ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
         '-framerate', f'{fps:g}', '-i', 'pipe:0', '-filter_complex',
         'split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse',
         '-f', 'gif', out], stdin=frames.tobytes(), what=f'GIF encode of {t} frames')
    with open(out, 'rb') as f:
      return f.read()


def file_sha256(path) -> str:
  """Hex sha256 of a file's bytes (a video's identity in records and rows)."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()
