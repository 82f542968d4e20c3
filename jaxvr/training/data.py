"""Training clips: random clips from a folder of videos, or synthetic ones.

Every batch is a pure function of ``(seed, position)``: sample ``g`` of the
run (``g = position * batch_size + row``) comes from video
``permutation(seed, epoch)[g % n_videos]`` with ``epoch = g // n_videos``,
and its clip start, crop and flip come from a numpy generator seeded with
``(seed, g)``. The iterator's whole state is therefore
``{'seed', 'batch_size', 'position'}``, a tiny JSON dict saved in each
checkpoint; restoring it reproduces the following batches exactly, on any
number of devices or processes.

(Grain's ``MapDataset`` gives the same guarantee, but its iterator state is
tied to the pipeline object and its worker processes; an index-based source
is shorter, has no hidden state, and makes multi-process slicing a one-line
rule: process ``p`` of ``P`` builds rows ``[p*B/P, (p+1)*B/P)`` of every
global batch.)

Transforms are numpy only (no device transfers inside the input pipeline):
temporal crop with stride, a crop with the output's aspect ratio (centred, or
random position and scale), antialiased bilinear resize, horizontal flip.
Batches are ``{'video': uint8 [B, T, H, W, 3]}``; trainers convert and
normalize on device.
"""

from __future__ import annotations

import abc
import concurrent.futures
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Sequence

import jax
import numpy as np
import tqdm

from jaxvr import files
from jaxvr.errors import ConfigError, SizeError, VideoError
from jaxvr.video import io as video_io

# Containers and raw streams ffmpeg reads by their suffix. ``.264``/``.h264``
# are raw H.264 Annex-B streams (no container, no timing).
VIDEO_SUFFIXES = ('.mp4', '.mkv', '.avi', '.mov', '.webm', '.y4m', '.gif',
                  '.m4v', '.mpg', '.mpeg', '.ts', '.264', '.h264', '.265',
                  '.hevc')


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """``[n_out, n_in]`` antialiased linear interpolation weights (rows sum 1)."""
  scale = max(n_in / n_out, 1.0)
  centers = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
  x = np.arange(n_in)
  w = np.maximum(0.0, 1.0 - np.abs(x[None, :] - centers[:, None]) / scale)
  return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes ``[T, H, W, C]`` frames to ``[T, h, w, C]`` float32 (numpy).

  Bilinear, widened to a triangle filter when shrinking (antialiasing, as
  ``jax.image.resize(..., 'linear', antialias=True)``). Two matrix products,
  so it runs at BLAS speed.
  """
  t, h_in, w_in, c = frames.shape
  h, w = size
  out = np.asarray(frames, np.float32)
  if (h_in, w_in) == (h, w):
    return out
  if h != h_in:
    out = np.matmul(_resize_matrix(h_in, h), out.reshape(t, h_in, w_in * c))
  if w != w_in:
    out = np.matmul(_resize_matrix(w_in, w), out.reshape(t * h, w_in, c))
  return out.reshape(t, h, w, c)


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class IndexedClips(abc.ABC):
  """Batches that are a pure function of (seed, position); restorable.

  Subclasses implement :meth:`sample`. Iterating yields
  ``{'video': uint8 [b, T, H, W, C]}`` with ``b`` this process's share of
  ``batch_size``.

  Args:
    batch_size: the global batch size (over all processes).
    seed: the data seed.
    num_workers: threads that build the samples of a batch (0 = inline).
  """

  def __init__(self, batch_size: int, seed: int, num_workers: int = 0):
    if int(batch_size) < 1:
      raise ConfigError(f'batch_size: expected >= 1, got {batch_size}')
    n_proc, p = jax.process_count(), jax.process_index()
    if batch_size % n_proc:
      raise ConfigError(
          f'batch_size: expected a multiple of the process count {n_proc}, '
          f'got {batch_size}')
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.position = 0
    local = self.batch_size // n_proc
    self._rows = range(p * local, (p + 1) * local)
    self._pool = (concurrent.futures.ThreadPoolExecutor(num_workers)
                  if num_workers > 0 else None)

  @abc.abstractmethod
  def sample(self, index: int) -> np.ndarray:
    """Clip number ``index`` of the run: uint8 ``[T, H, W, C]``."""

  def rng(self, index: int) -> np.random.Generator:
    """The generator of sample ``index`` (depends on seed and index only)."""
    return np.random.default_rng([self.seed, int(index)])

  def batch_at(self, position: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch number ``position``."""
    return self._rows_of(position, self._rows)

  def global_batch_at(self, position: int) -> dict[str, np.ndarray]:
    """Every row of global batch ``position``, whatever this process loads.

    For initializations that every process must compute identically (e.g.
    a dictionary seeded from data patches).
    """
    return self._rows_of(position, range(self.batch_size))

  def _rows_of(self, position: int, rows: range) -> dict[str, np.ndarray]:
    indices = [position * self.batch_size + r for r in rows]
    if self._pool is None:
      clips = [self.sample(i) for i in indices]
    else:
      clips = list(self._pool.map(self.sample, indices))
    return {'video': np.stack(clips)}

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.batch_at(self.position)
    self.position += 1
    return batch

  def get_state(self) -> dict:
    """The iterator position and what it depends on, JSON-able."""
    return {'seed': self.seed, 'batch_size': self.batch_size,
            'position': self.position}

  def set_state(self, state: dict, *, allow_changes: bool = False) -> None:
    """Continues from a position saved by :meth:`get_state`.

    Args:
      state: a saved state.
      allow_changes: continue at the saved position even if the state
        belongs to another seed, batch size or clip list.

    Raises:
      ConfigError: if the state belongs to another seed, batch size or clip
        list (see :func:`data_state_changes`) and changes are not allowed.
    """
    changes = data_state_changes(state, self.get_state())
    if changes and not allow_changes:
      raise ConfigError(
          f'data state: the checkpoint was built from other data '
          f'({"; ".join(changes)}); resume with the same data config and '
          f'clips, or set config.allow_config_change=True')
    self.position = int(state['position'])


def _clip_list_changes(saved: list[dict], current: list[dict]) -> str:
  old = {c['name']: c['sha256'] for c in saved}
  new = {c['name']: c['sha256'] for c in current}
  parts = []
  for label, names in (
      ('removed', sorted(old.keys() - new.keys())),
      ('added', sorted(new.keys() - old.keys())),
      ('changed content', sorted(n for n in old.keys() & new.keys()
                                 if old[n] != new[n]))):
    if names:
      more = f' and {len(names) - 3} more' if len(names) > 3 else ''
      parts.append(f'{label} {", ".join(names[:3])}{more}')
  return f'clips: {len(old)} -> {len(new)} videos, ' + ', '.join(parts)


def data_state_changes(saved: dict, current: dict) -> list[str]:
  """How a saved data state differs from an iterator's, field by field.

  Compares the seed, the batch size and (when both record one) the clip
  list; the position is what a resume restores, not a difference.

  Returns:
    ``['seed: 0 -> 2', 'clips: 3 -> 3 videos, removed a.mp4, ...']``.
  """
  out = [f'{name}: {saved.get(name)} -> {current.get(name)}'
         for name in ('seed', 'batch_size')
         if saved.get(name) != current.get(name)]
  old, new = saved.get('clips'), current.get('clips')
  if old is not None and (new or []) != old:
    out.append(_clip_list_changes(old, new or []))
  return out


def list_videos(folder: str | os.PathLike) -> list[pathlib.Path]:
  """The video files directly inside ``folder``, sorted by name.

  Raises:
    VideoError: if the folder does not exist or holds no video.
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise VideoError(f'video folder {folder}: not a directory')
  paths = sorted(p for p in folder.iterdir()
                 if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
  if not paths:
    raise VideoError(
        f'video folder {folder}: no video files (looked for '
        f'{", ".join(VIDEO_SUFFIXES)})')
  return paths


def preload_video(path: str | os.PathLike, short: int,
                  max_frames: int | None = None, chunk: int = 32
                  ) -> np.ndarray:
  """Decodes a whole video with its short side shrunk to ``short`` pixels.

  Frames are shrunk in chunks as they arrive, so memory holds the small
  video only. Videos already smaller are kept at their size.

  Args:
    path: a video file.
    short: target short side in pixels.
    max_frames: keep at most this many frames, evenly spread over the
      video (a contiguous run of ``max_frames`` from a random start would
      miss most of a long recording); None keeps all.
    chunk: frames resized per batch.

  Returns:
    uint8 ``[T, h, w, 3]``.
  """
  info = video_io.probe_video(path)
  factor = short / min(info.height, info.width)
  new = (max(1, round(info.height * factor)),
         max(1, round(info.width * factor)))
  keep = None
  if max_frames is not None and info.n_frames > max_frames:
    # Evenly spaced runs of 32 consecutive frames, so clips keep their
    # real motion (a plain frame stride would speed the video up).
    runs = max(1, max_frames // chunk)
    starts = np.linspace(0, info.n_frames - chunk, runs).astype(int)
    keep = set(int(s + i) for s in starts for i in range(chunk))
  # Large reductions start with a k x k box average (cheap), so the
  # interpolation matrices stay small.
  k = max(1, int(1 / factor) // 2)
  out, pending = [], []

  def flush():
    block = np.stack(pending)
    pending.clear()
    if factor >= 1:
      out.append(block)
      return
    if k > 1:
      t, h, w, c = block.shape
      block = block[:, :h - h % k, :w - w % k].reshape(
          t, h // k, k, w // k, k, c).mean(axis=(2, 4), dtype=np.float32)
    out.append(_to_uint8(resize_frames(block, new)))

  for i, frame in enumerate(video_io.iter_frames(path)):
    if keep is not None and i not in keep:
      continue
    pending.append(frame)
    if len(pending) == chunk:
      flush()
  if pending:
    flush()
  return np.concatenate(out)


def _cached_preload(path: pathlib.Path, short: int, max_frames: int | None,
                    cache_dir: str | os.PathLike | None) -> np.ndarray:
  """:func:`preload_video`, through an ``.npy`` cache when one is given."""
  if not cache_dir:
    return preload_video(path, short, max_frames)
  stat = path.stat()
  key = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns,
                    short, max_frames, 2])
  name = f'{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy'
  cached = pathlib.Path(cache_dir) / name
  if cached.exists():
    return np.load(cached)
  frames = preload_video(path, short, max_frames)
  files.save_npy(cached, frames)
  return frames


def clip_list(paths: Sequence[str | os.PathLike]) -> list[dict]:
  """``[{'name', 'sha256'}]`` of video files: what a model was fitted on."""
  return [{'name': pathlib.Path(p).name, 'sha256': video_io.file_sha256(p)}
          for p in paths]


class VideoClips(IndexedClips):
  """Random clips from a list of video files.

  Args:
    paths: video files, or one folder of them.
    num_frames: frames per clip ``T``.
    size: output ``(height, width)``.
    batch_size: global batch size.
    seed: data seed.
    frame_stride: keep every ``frame_stride``-th frame of the clip. A video
      too short for ``num_frames`` at this stride is sampled at the largest
      stride it allows (logged); one shorter than ``num_frames`` is an
      error.
    crop: ``'center'`` or ``'random'``: where the crop (with the output's
      aspect ratio) sits in the frame.
    crop_scale: ``(low, high)`` side of the crop as a fraction of the largest
      crop that fits; random crops draw it uniformly, centre crops use
      ``high``.
    flip: flip half of the clips horizontally.
    preload_short_side: if set, decode every video once at construction,
      resized so its short side is this many pixels (never enlarged), and
      cut clips from memory; otherwise each clip is decoded from its file.
    max_frames_per_video: with preloading, keep at most this many frames of
      each video, evenly spread over its length (long, mostly static
      recordings would otherwise dominate memory and decode time); None
      keeps every frame.
    cache_dir: with preloading, keep each decoded and resized video here as
      ``.npy`` (keyed by the file's path, size and modification time and the
      preload settings), so later runs and other trainers skip decoding.
    num_workers: threads building a batch.
  """

  def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
               num_frames: int, size: tuple[int, int], *, batch_size: int,
               seed: int = 0, frame_stride: int = 1, crop: str = 'random',
               crop_scale: tuple[float, float] = (1.0, 1.0),
               flip: bool = True, preload_short_side: int | None = None,
               max_frames_per_video: int | None = None,
               cache_dir: str | os.PathLike | None = None,
               num_workers: int = 0):
    super().__init__(batch_size, seed, num_workers)
    if isinstance(paths, (str, os.PathLike)):
      paths = list_videos(paths)
    if not paths:
      raise VideoError('paths: expected at least one video file, got none')
    if crop not in ('center', 'random'):
      raise ConfigError(f"crop: expected 'center' or 'random', got {crop!r}")
    lo, hi = (float(s) for s in crop_scale)
    if not 0 < lo <= hi <= 1:
      raise ConfigError(
          f'crop_scale: expected 0 < low <= high <= 1, got {crop_scale}')
    if num_frames < 1 or frame_stride < 1 or min(size) < 1:
      raise ConfigError(
          f'num_frames, frame_stride, size: expected positive values, got '
          f'{num_frames}, {frame_stride}, {size}')
    self.paths = [pathlib.Path(p) for p in paths]
    self.num_frames = int(num_frames)
    self.size = (int(size[0]), int(size[1]))
    self.frame_stride = int(frame_stride)
    self.crop = crop
    self.crop_scale = (lo, hi)
    self.flip = bool(flip)
    self._frames: list[np.ndarray] | None = None
    if preload_short_side is not None and preload_short_side < 1:
      raise ConfigError(f'preload_short_side: expected a positive size or '
                        f'None, got {preload_short_side}')
    if max_frames_per_video is not None and int(max_frames_per_video) < 1:
      raise ConfigError(f'max_frames_per_video: expected a positive count or '
                        f'None, got {max_frames_per_video}')
    if preload_short_side is not None:
      bar = tqdm.tqdm(self.paths, desc='decoding videos', leave=False,
                      disable=jax.process_index() != 0)
      self._frames = [
          _cached_preload(p, int(preload_short_side), max_frames_per_video,
                          cache_dir) for p in bar]
      self._n_frames = [len(f) for f in self._frames]
    else:
      self._n_frames = [video_io.probe_video(p).n_frames for p in self.paths]
    self.clips = clip_list(self.paths)  # What a checkpoint was trained on.
    self._strides = []
    for path, n in zip(self.paths, self._n_frames, strict=True):
      if n < self.num_frames:
        raise SizeError(
            f'{path}: has {n} frames, a clip needs {self.num_frames}')
      stride = min(self.frame_stride,
                   (n - 1) // max(self.num_frames - 1, 1))
      if stride < self.frame_stride:
        logging.info('%s: %d frames, sampled at stride %d instead of %d',
                     path.name, n, stride, self.frame_stride)
      self._strides.append(stride)

  def __len__(self) -> int:
    """Number of videos (one epoch visits each once)."""
    return len(self.paths)

  def get_state(self) -> dict:
    """The position, seed, batch size and clip list (names and sha256)."""
    return super().get_state() | {'clips': self.clips}

  def _span_of(self, item: int) -> int:
    return (self.num_frames - 1) * self._strides[item] + 1

  def _read(self, item: int, start: int) -> np.ndarray:
    stride = self._strides[item]
    if self._frames is not None:
      stop = start + self._span_of(item)
      return self._frames[item][start:stop:stride]
    return video_io.read_video(self.paths[item], start=start, stride=stride,
                               max_frames=self.num_frames)

  def sample(self, index: int) -> np.ndarray:
    n = len(self.paths)
    epoch, offset = divmod(int(index), n)
    item = int(np.random.default_rng([self.seed, 1 << 20, epoch])
               .permutation(n)[offset])
    rng = self.rng(index)
    start = int(rng.integers(0, self._n_frames[item] - self._span_of(item)
                             + 1))
    clip = self._read(item, start)
    if len(clip) != self.num_frames:
      raise VideoError(
          f'{self.paths[item]}: expected {self.num_frames} frames from frame '
          f'{start}, decoded {len(clip)}')
    _, h, w, _ = clip.shape
    out_h, out_w = self.size
    fit = min(h / out_h, w / out_w)
    if self.crop == 'random':
      scale = rng.uniform(*self.crop_scale)
    else:
      scale = self.crop_scale[1]
    ch = max(1, min(h, round(out_h * fit * scale)))
    cw = max(1, min(w, round(out_w * fit * scale)))
    if self.crop == 'random':
      y0 = int(rng.integers(0, h - ch + 1))
      x0 = int(rng.integers(0, w - cw + 1))
    else:
      y0, x0 = (h - ch) // 2, (w - cw) // 2
    clip = resize_frames(clip[:, y0:y0 + ch, x0:x0 + cw], self.size)
    if self.flip and rng.random() < 0.5:
      clip = clip[:, :, ::-1]
    return _to_uint8(clip)


class SyntheticClips(IndexedClips):
  """Procedural moving-pattern clips, for smoke tests and benchmarks.

  Each clip is a drifting sinusoidal grating under a moving bright square
  on a random background colour: it has spatial structure and motion, so a
  model's loss can fall, and needs no files.

  Args:
    num_frames: frames per clip ``T``.
    size: ``(height, width)``.
    batch_size: global batch size.
    seed: data seed.
    channels: colour channels ``C``.
  """

  def __init__(self, num_frames: int, size: tuple[int, int], *,
               batch_size: int, seed: int = 0, channels: int = 3):
    super().__init__(batch_size, seed)
    if num_frames < 1 or min(size) < 2 or channels < 1:
      raise ConfigError(
          f'num_frames, size, channels: expected T >= 1, H, W >= 2, C >= 1; '
          f'got {num_frames}, {size}, {channels}')
    self.num_frames = int(num_frames)
    self.size = (int(size[0]), int(size[1]))
    self.channels = int(channels)

  def sample(self, index: int) -> np.ndarray:
    rng = self.rng(index)
    t_len, (h, w), c = self.num_frames, self.size, self.channels
    t = np.arange(t_len, dtype=np.float32)[:, None, None]
    y = np.arange(h, dtype=np.float32)[None, :, None]
    x = np.arange(w, dtype=np.float32)[None, None, :]
    freq = rng.uniform(0.05, 0.3, size=2)
    speed = rng.uniform(-0.5, 0.5)
    grating = 0.5 + 0.5 * np.sin(freq[0] * y + freq[1] * x + speed * t)
    side = max(1, min(h, w) // 3)
    pos = rng.uniform(0, 1, size=2) * [h - side, w - side]
    vel = rng.uniform(-1.5, 1.5, size=2)
    ys = np.clip(pos[0] + vel[0] * t[:, 0, 0], 0, h - side).astype(int)
    xs = np.clip(pos[1] + vel[1] * t[:, 0, 0], 0, w - side).astype(int)
    square = np.zeros((t_len, h, w), np.float32)
    for i in range(t_len):
      square[i, ys[i]:ys[i] + side, xs[i]:xs[i] + side] = 1.0
    background = rng.uniform(0, 1, size=c).astype(np.float32)
    tint = rng.uniform(0.2, 1, size=c).astype(np.float32)
    video = (0.5 * background + 0.5 * tint * grating[..., None])
    video = np.where(square[..., None] > 0, 1.0, video)
    return _to_uint8(255 * video)


def videos_from_config(data_config, num_frames: int, size: tuple[int, int],
                       *, seed: int, **kwargs) -> VideoClips:
  """:class:`VideoClips` from a trainer's ``config.data`` section.

  Reads ``clips_dir`` (required), ``preload_short_side`` (0/None: decode
  per clip), ``max_frames_per_video``, ``cache_dir`` and ``num_workers``
  when present; ``kwargs`` (crop, crop_scale, frame_stride, flip, ...) are
  the trainer's own sampling choices.

  Raises:
    ConfigError: if ``clips_dir`` is empty.
  """
  d = data_config
  if not d.get('clips_dir'):
    raise ConfigError('config.data.clips_dir: expected a folder of videos '
                      '(or set config.data.source=synthetic)')
  cap = d.get('max_frames_per_video') or None
  return VideoClips(
      d.clips_dir, num_frames, size, batch_size=int(d.batch_size), seed=seed,
      preload_short_side=d.get('preload_short_side') or None,
      max_frames_per_video=None if cap is None else int(cap),
      cache_dir=d.get('cache_dir') or None,
      num_workers=int(d.get('num_workers', 0)), **kwargs)


def validation_clips(folder: str | os.PathLike, num_frames: int,
                     size: tuple[int, int], *, frame_stride: int = 1,
                     windows: int = 1, max_videos: int | None = None
                     ) -> np.ndarray:
  """Fixed clips of the validation videos, for evaluation during training.

  Deterministic, and cut by the loader of ``jaxvr compare``
  (:func:`jaxvr.video.read_clip`: short side resized with Pillow's Lanczos
  filter, then the centred crop), so a
  validation score during training is measured on the same pixels as the
  evaluation tables: from each video, ``windows`` clips of ``num_frames``
  frames at ``frame_stride``, the first starting at frame 0 and the others
  spread evenly over the video (the stride is lowered for videos too short
  for it).

  Args:
    folder: the validation folder (never a training folder).
    num_frames: frames per clip ``T``.
    size: ``(height, width)``.
    frame_stride: temporal stride.
    windows: clips per video.
    max_videos: use the first videos only (sorted by name).

  Returns:
    uint8 ``[N, T, H, W, 3]``.
  """
  paths = list_videos(folder)[:max_videos]
  out = []
  for path in paths:
    n = video_io.probe_video(path).n_frames
    stride = max(1, min(int(frame_stride), (n - 1) // max(num_frames - 1, 1)))
    span = (num_frames - 1) * stride + 1
    if n < span:
      raise SizeError(f'{path}: has {n} frames, a validation clip needs '
                      f'{span}')
    for s in np.linspace(0, n - span, windows).astype(int):
      clip, _ = video_io.read_clip(path, num_frames, start=int(s),
                                   stride=stride, size=tuple(size))
      out.append(clip)
  return np.stack(out)


TRAINING_RECORD = 'training_clips.json'


def training_record_path(export: str | os.PathLike) -> pathlib.Path:
  """Where an export's training-clip record goes.

  Inside an exported folder (``<dir>/training_clips.json``), beside an
  exported file (``<name>.training_clips.json``).
  """
  export = pathlib.Path(export)
  if export.suffix:
    return export.with_name(f'{export.stem}.{TRAINING_RECORD}')
  return export / TRAINING_RECORD


def write_training_record(export: str | os.PathLike, data_config,
                          steps: int) -> pathlib.Path | None:
  """Records which videos an exported model was fitted on.

  Writes ``{"clips_dir", "steps", "clips": [{"name", "sha256"}]}`` (see
  :func:`training_record_path`), so anyone can check that a model never saw
  the clips it is evaluated on. Nothing is written for synthetic data.

  Returns:
    The record's path, or None.
  """
  if data_config.get('source', 'videos') != 'videos':
    return None
  path = training_record_path(export)
  record = {'clips_dir': pathlib.Path(data_config.clips_dir).name,
            'steps': int(steps),
            'clips': clip_list(list_videos(data_config.clips_dir))}
  files.write_json(path, record, indent=1)
  return path


def validation_clips_from_config(data_config, size: int,
                                 num_frames: int) -> np.ndarray | None:
  """:func:`validation_clips` of ``data_config.val_dir``, one per video.

  Frame size and clip length come from ``data_config.val_size`` and
  ``val_frames`` when set, else from the trainer's defaults given here.
  None when no validation folder is configured.
  """
  d = data_config
  if not d.get('val_dir'):
    return None
  size = int(d.get('val_size', size))
  return validation_clips(d.val_dir, int(d.get('val_frames', num_frames)),
                          (size, size))
