"""CARV end to end: a full-resolution video in, a reduced video out.

Chhabra & Yang, "Algorithmic Video Reduction by Estimating Chunk Significance
Using Spatial-Temporal Masked Auto Encoders".

Steps (:func:`reduce` runs them all, on an array or a video file streamed
as a :class:`Span`; the CARV reducers and :func:`run_carv`, behind
``jaxvr carv``, call it):

1. **Model clip** (:func:`jaxvr.carv.clip.model_clip`): ``num_frames`` frames of the span to
   reduce, evenly spaced (exactly the first ``num_frames`` frames when the
   span has that length), short side resized to the model's ``img_size``,
   centre-cropped to a square, normalised (mean 0.45, std 0.225).
2. **Significance** of every ST-MAE chunk of that clip, ``[t', h', w']``
   (:func:`jaxvr.carv.estimate_significance`).
3. **Full-frame chunk grid** (:func:`jaxvr.carv.clip.full_frame_map`): the crop covers only
   the centre of a non-square frame, so the map is carried onto a grid
   ``[t', h'', w'']`` tiling the whole frame with chunks of the same size in
   pixels as the crop's chunks (:func:`jaxvr.video.tubes.chunk_bounds`
   convention); every full-frame chunk takes the value of the crop chunk
   under its centre, clamped at the crop's edges. For a square frame the
   crop is the whole frame and the map is unchanged. Temporal chunk ``i``
   covers the ``i``-th of ``t'`` equal parts of the span, the same frames
   its clip frames were taken from.
4. **Refresh schedule** and **reduced video** at the budget ``N``
   (:mod:`jaxvr.carv.schedule`), or a baseline at the same ``N``
   (:data:`METHODS`).
5. **x264 stream** of the reduced video, encoded as it is refreshed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr import files
from jaxvr.carv import baselines, schedule
from jaxvr.carv.clip import (
    ClipGeometry,
    clip_geometry,
    full_frame_map,
    model_clip,
)
from jaxvr.carv.significance import ESTIMATORS, estimate_significance
from jaxvr.errors import CheckpointError, ConfigError, SizeError
from jaxvr.sharding import is_main_process
from jaxvr.stmae.model import STMAEConfig
from jaxvr.video import io as video_io
from jaxvr.video.transforms import check_frames

#: Reduction methods at a refresh budget ``N``: CARV with either estimator,
#: and the three baselines.
METHODS = ('carv-visible', 'carv-masked', 'every-nth', 'random-chunk',
           'motion-energy')
#: The methods whose schedule comes from a significance map.
MAP_METHODS = ('carv-visible', 'carv-masked', 'motion-energy')
DEFAULT_N_SAMPLES = 500
DEFAULT_MASK_RATIO = 0.98
# Full-resolution frames per refresh block in run_carv: about 64 MB of them
# (10 frames at 1080p, 32 at most), several copies of which are alive.
_REFRESH_BLOCK_BYTES = 64 << 20
DEFAULT_MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent / (
    'assets/stmae_small')
#: The shape of the bundled model (16x112x112, 2x16x16 tubelets); baselines
#: use its chunk grid when no model is given.
SMALL_CONFIG = STMAEConfig(
    img_size=112, patch_size=16, embed_dim=192, depth=4, num_heads=3,
    decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    norm_pix_loss=True, num_frames=16, t_patch_size=2, pred_t_dim=8,
    sep_pos_embed=True, cls_embed=True)


def _check_model(params, config) -> None:
  if (params is None) != (config is None) and config is None:
    raise ConfigError('config: pass the STMAEConfig of the given params (or '
                      'neither, for the bundled model)')


def _budget(n) -> int:
  if int(n) != n or int(n) < 1:
    raise ConfigError(f'budget: expected a positive whole number of frames N, '
                      f'got {n}')
  return int(n)


def schedule_for(method: str, num_frames: int, budget: int, *,
                 grid: tuple[int, int, int],
                 full_map: np.ndarray | None = None,
                 key: jax.Array | None = None,
                 invert: bool = False) -> jax.Array:
  """Refresh flags of ``method`` from what a receiver knows.

  Args:
    method: one of :data:`METHODS`.
    num_frames: ``T``.
    budget: ``N``.
    grid: ``(t', h'', w'')`` chunk grid of the schedule.
    full_map: the full-frame map ``[t', h'', w'']`` (CARV, motion energy).
    key: random key of the random-chunk phases; default ``key(0)``.
    invert: CARV/motion energy: refresh low-significance chunks more.

  Returns:
    bool ``[T, h'', w'']``.
  """
  n = _budget(budget)
  if method in MAP_METHODS:
    if full_map is None:
      raise ConfigError(f'{method}: needs a significance map')
    return schedule.schedule_from_significance(
        jnp.asarray(full_map, jnp.float32), num_frames, n, invert=invert)
  if method == 'every-nth':
    return baselines.every_nth_frame_flags(num_frames, grid[1:], n)
  if method == 'random-chunk':
    key = jax.random.key(0) if key is None else key
    return baselines.nth_random_chunk_flags(key, num_frames, grid[1:], n)
  raise ConfigError(f'method: expected one of {METHODS}, got {method!r}')


class Span:
  """The frames to reduce: an array, or a stretch of a video file.

  A file is streamed twice (once for the clip frames of the model, once
  through the refresh), so a long video is never held whole.

  Attributes:
    shape: ``(T, H, W)``.
    fps: frame rate of the reduced video.
  """

  def __init__(self, shape: Sequence[int], fps: float,
               read: Callable[[], Iterable[np.ndarray]],
               array: np.ndarray | None = None):
    self.shape = tuple(int(s) for s in shape[:3])
    self.fps = float(fps)
    self._read = read
    self._array = array

  @classmethod
  def of_array(cls, video, fps: float = 24.0) -> Span:
    """uint8 ``[T, H, W, 3]`` frames in memory."""
    video = check_frames(video)
    return cls(video.shape, fps, lambda: [video], video)

  @classmethod
  def of_file(cls, path: str | os.PathLike, *, start: int = 0,
              max_frames: int | None = None) -> Span:
    """Frames ``start, start + 1, ...`` of a video file (at most
    ``max_frames``; default to its end), at the file's frame rate."""
    info = video_io.probe_video(path)
    total = info.n_frames - int(start)
    if max_frames is not None:
      total = min(total, int(max_frames))
    total = max(total, 0)
    return cls((total, info.height, info.width), info.fps or 24,
               lambda: video_io.iter_frames(path, start=start,
                                            max_frames=total))

  def frames(self) -> Iterable[np.ndarray]:
    """The frames in order, as ``[H, W, 3]`` frames or ``[b, H, W, 3]`` blocks."""
    return self._read()

  def pick(self, ids: Sequence[int]) -> np.ndarray:
    """Frames ``ids`` (increasing), uint8 ``[len(ids), H, W, 3]``."""
    if self._array is not None:
      return self._array[np.asarray(ids)]
    wanted = set(ids)
    return np.stack([f for i, f in enumerate(self.frames()) if i in wanted])

  def whole(self) -> np.ndarray:
    """Every frame, uint8 ``[T, H, W, 3]``."""
    if self._array is not None:
      return self._array
    return np.concatenate([f[None] if f.ndim == 3 else f
                           for f in self.frames()])


@dataclasses.dataclass(frozen=True)
class Reduction:
  """A reduced span and how it was made.

  Attributes:
    video: uint8 ``[T, H, W, 3]`` reduced video; None when it was written to
      a file or not made.
    flags: bool ``[T, h'', w'']`` refresh flags.
    significance: the map on the model crop ``[t', h', w']`` (CARV) or the
      full-frame motion-energy map; None for the fixed baselines.
    full_map: the map the schedule used ``[t', h'', w'']`` (or None).
    geometry: the :class:`ClipGeometry`.
    grid: ``(t', h'', w'')`` chunk grid of the schedule.
    clip_frames: the full-resolution frames the model clip was cut from
      (CARV with an estimate; else None).
  """
  video: np.ndarray | None
  flags: np.ndarray
  significance: np.ndarray | None
  full_map: np.ndarray | None
  geometry: ClipGeometry
  grid: tuple[int, int, int]
  clip_frames: np.ndarray | None = None

  @property
  def refresh_fraction(self) -> float:
    return float(np.mean(self.flags))


def reduce(video: np.ndarray | Span, method: str, budget: int, *,
           params=None, config: STMAEConfig | None = None,
           key: jax.Array | None = None,
           significance: jax.Array | None = None,
           n_samples: int = DEFAULT_N_SAMPLES,
           mask_ratio: float = DEFAULT_MASK_RATIO, invert: bool = False,
           batch_size: int | None = None, progress: bool = False,
           map_dtype: type = np.float32,
           out: str | os.PathLike | None = None,
           crf: float = 18, refresh: bool = True) -> Reduction:
  """Reduces a full-resolution span with CARV or a baseline at budget ``N``.

  The one home of the sequence: the significance map (CARV: the model
  clip's ST-MAE estimate carried onto the full frame; motion energy), the
  refresh schedule, the refreshed video, and its x264 stream.

  Args:
    video: uint8 ``[T, H, W, 3]``, any size, ``T >= config.num_frames``; or
      a :class:`Span` (a video file, streamed).
    method: one of :data:`METHODS`.
    budget: ``N``: on average a chunk is refreshed once every ``N`` frames.
    params, config: the ST-MAE; default :func:`load_default_model` (only
      loaded by a CARV method without ``significance``; otherwise the grid
      of :data:`SMALL_CONFIG`).
    key: random key (masks, random phases); default ``key(0)``.
    significance: a precomputed crop map ``[t', h', w']`` for a CARV method
      (skips the estimate).
    n_samples, mask_ratio, batch_size, progress: of the estimate.
    invert: refresh low-significance chunks more (the paper's text).
    map_dtype: the full-frame map is rounded to this dtype before the
      schedule is made from it (float16: as a payload sends it).
    out: write the reduced video here as x264 (``crf``, 4:2:0, odd sizes
      edge-padded, the span's frame rate), streamed a block of frames at a
      time, instead of returning it.
    crf: x264 crf of ``out``.
    refresh: False stops after the schedule: in a multi-process run the
      processes that only share the estimate's work make no video.

  Returns:
    A :class:`Reduction`; its flags cover the frames that decoded (a file
    may hold fewer than its container promised).
  """
  span = video if isinstance(video, Span) else Span.of_array(video)
  if method not in METHODS:
    raise ConfigError(f'method: expected one of {METHODS}, got {method!r}')
  n = _budget(budget)
  _check_model(params, config)
  if config is None:
    if method.startswith('carv-') and significance is None:
      params, config = load_default_model()
    else:
      config = SMALL_CONFIG
  key = jax.random.key(0) if key is None else key
  geom = clip_geometry(span.shape, config)
  grid = (config.grid[0], *geom.full_grid())
  sig = clip_frames = None
  if method.startswith('carv-') and significance is not None:
    sig = np.asarray(jnp.asarray(significance, jnp.float32))
  elif method.startswith('carv-'):
    if params is None:
      raise ConfigError('params: the ST-MAE parameters are needed to '
                        'estimate significance')
    clip_frames = span.pick(geom.frame_ids)
    clip, _ = model_clip(clip_frames, config)
    # A host copy: what follows runs on this process alone (a computation on
    # the global array of a multi-process estimate would wait for the others).
    sig = np.asarray(estimate_significance(
        params, config, clip, key, n_samples=n_samples, mask_ratio=mask_ratio,
        batch_size=batch_size, estimator=method.split('-', 1)[1],
        progress=progress))
  elif method == 'motion-energy':
    sig = np.asarray(baselines.motion_energy(span.whole(), grid))
  full = None
  if sig is not None:
    full = sig if method == 'motion-energy' else full_frame_map(sig, geom)
    full = np.asarray(full, map_dtype)
    grid = full.shape
  flags = np.asarray(schedule_for(method, span.shape[0], n, grid=grid,
                                  full_map=full, key=key, invert=invert))
  reduced = None
  if refresh:
    reduced, written = _refresh(span, flags, out, crf)
    flags = flags[:written]
  return Reduction(reduced, flags, sig, full, geom, tuple(grid), clip_frames)


def _refresh(span: Span, flags: np.ndarray, out, crf: float
             ) -> tuple[np.ndarray | None, int]:
  """The refreshed span, or None after writing it to ``out``; and its length."""
  frame_bytes = span.shape[1] * span.shape[2] * 3
  blocks = schedule.apply_refresh_stream(
      span.frames(), flags,
      block=max(1, min(32, _REFRESH_BLOCK_BYTES // frame_bytes)))
  if out is None:
    reduced = np.concatenate(list(blocks))
    return reduced, len(reduced)
  written = 0

  def counted():
    nonlocal written
    for block in blocks:
      written += len(block)
      yield block

  video_io.write_video(out, counted(), fps=span.fps, crf=crf)
  return None, written


@functools.lru_cache(maxsize=2)
def _load_model(directory: str) -> tuple[object, STMAEConfig]:
  from jaxvr.checkpoint import load_params
  path = pathlib.Path(directory)
  if not (path / 'params').is_dir():
    raise CheckpointError(
        f'ST-MAE weights: expected a folder written by save_params at '
        f'{path} (with params/ and config.json); none found. Pass params and '
        f'config explicitly, or train one with python -m train.stmae ... '
        f'--export=DIR')
  params, cfg = load_params(path)
  cfg = {k: v for k, v in cfg.items()
         if k in {f.name for f in dataclasses.fields(STMAEConfig)}}
  try:
    config = STMAEConfig(**cfg)
  except TypeError as e:
    raise CheckpointError(f'{path}/config.json: not an STMAEConfig: {e}') from e
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  return params, config


def load_default_model(directory: str | os.PathLike | None = None
                       ) -> tuple[object, STMAEConfig]:
  """The bundled small ST-MAE (``jaxvr/assets/stmae_small``), float32.

  The weights are stored in float16 to stay small and cast to float32 here.

  Args:
    directory: another folder written by ``save_params`` instead.

  Returns:
    ``(params, STMAEConfig)``.

  Raises:
    CheckpointError: the folder or its parameters are missing or unreadable.
  """
  return _load_model(str(directory or DEFAULT_MODEL_DIR))


def run_carv(video_path: str | os.PathLike, out_dir: str | os.PathLike, *,
             params=None, config: STMAEConfig | None = None,
             n_samples: int = DEFAULT_N_SAMPLES,
             mask_ratio: float = DEFAULT_MASK_RATIO, budget: int = 4,
             estimator: str = 'visible', invert: bool = False,
             key: jax.Array | None = None, start: int = 0,
             max_frames: int | None = None, crf: float = 18,
             batch_size: int | None = None,
             progress: bool = True) -> dict[str, pathlib.Path]:
  """Reduces a video file with CARV (:func:`reduce`) and writes the results.

  The full-resolution frames are streamed twice (a :class:`Span` of the
  file): once to collect the clip frames for the model, once through the
  refresh (``apply_refresh_stream``, a block of frames on the device at a
  time) into the x264 encoder. One significance map serves the whole span:
  its ``t'`` temporal chunks are spread over the span, as the clip frames
  were, so for long spans reduce shorter pieces (``start``, ``max_frames``)
  to keep the map close to the content.

  Args:
    video_path: any video ffmpeg reads.
    out_dir: output folder (created).
    params, config: the ST-MAE; default the bundled model.
    n_samples, mask_ratio, estimator, batch_size: of the estimate.
    budget: ``N``.
    invert: refresh low-significance chunks more.
    key: random key of the masks; default ``key(0)``.
    start, max_frames: the span of the file to reduce (default all of it).
    crf: x264 crf of the written reduced video.
    progress: progress bar of the estimate.

  In a multi-process run every process computes (the masks are shared
  over every device of every process) and process 0 writes the files.

  Returns:
    Paths: ``video`` (``reduced.mp4``), ``significance`` (``[t', h', w']``
    ``significance.npy`` on the model crop), ``full_map``
    (``significance_full.npy``, ``[t', h'', w'']``), ``flags``
    (``flags.npy``), ``heatmap`` (``heatmap.png``).
  """
  from jaxvr.carv import figures

  if estimator not in ESTIMATORS:
    raise ConfigError(f'estimator: expected one of {ESTIMATORS}, got '
                      f'{estimator!r}')
  _budget(budget)
  _check_model(params, config)
  if config is None:
    params, config = load_default_model()
  span = Span.of_file(video_path, start=start, max_frames=max_frames)
  if span.shape[0] < config.num_frames:
    raise SizeError(f'{video_path}: expected at least {config.num_frames} '
                    f'frames from frame {start}, got {span.shape[0]}')
  out = pathlib.Path(out_dir)
  paths = {'video': out / 'reduced.mp4', 'significance': out / 'significance.npy',
           'full_map': out / 'significance_full.npy', 'flags': out / 'flags.npy',
           'heatmap': out / 'heatmap.png'}
  # Every process holds the same map; one reduces and writes.
  main = is_main_process()
  if main:
    out.mkdir(parents=True, exist_ok=True)
  red = reduce(span, f'carv-{estimator}', budget, params=params,
               config=config, key=key, n_samples=n_samples,
               mask_ratio=mask_ratio, invert=invert, batch_size=batch_size,
               progress=progress, out=paths['video'] if main else None,
               crf=crf, refresh=main)
  if not main:
    return paths
  for name, arr in (('significance', red.significance),
                    ('full_map', red.full_map), ('flags', red.flags)):
    files.save_npy(paths[name], arr)
  png = figures.significance_figure(
      red.clip_frames, red.significance, geom=red.geometry,
      frame_ids=red.geometry.frame_ids,
      title=f'{pathlib.Path(video_path).name}: CARV {estimator}')
  files.write_bytes(paths['heatmap'], png)
  return paths
