"""The reducer interface and registry."""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Callable

import numpy as np

from jaxvr import errors


@dataclasses.dataclass(frozen=True)
class Payload:
  """What a reducer stores or sends.

  Attributes:
    data: the encoded bytes, exactly as they would be written.
    meta: small facts for reports (not counted in the size; anything the
      decoder needs is inside ``data``).
  """

  data: bytes
  meta: dict = dataclasses.field(default_factory=dict)

  @property
  def size(self) -> int:
    return len(self.data)


class Reducer(abc.ABC):
  """Reduces uint8 ``[T, H, W, 3]`` video to a payload and restores it."""

  name: str = ''
  #: the smallest frame side and frame count this reducer accepts.
  min_size: int = 16
  min_frames: int = 1

  @abc.abstractmethod
  def encode(self, video: np.ndarray, fps: float) -> Payload:
    """Encodes ``video`` (uint8 ``[T, H, W, 3]``) into a payload."""

  @abc.abstractmethod
  def decode(self, payload: Payload) -> np.ndarray:
    """Restores uint8 ``[T, H, W, 3]`` from a payload.

    Payload bytes may come from anywhere: malformed ones raise
    :class:`jaxvr.errors.PayloadError` before anything is allocated (see
    :mod:`jaxvr.payloads`)."""

  def extras(self) -> dict:
    """Arrays worth showing in a report (masks, significance maps), if any."""
    return {}

  def frame_groups(self, n_frames: int) -> dict[str, np.ndarray]:
    """Frame indices measured separately as well (e.g. kept vs dropped).

    The runner reports ``psnr_<group>`` for each group beside the metrics
    over all frames. None by default.
    """
    del n_frames
    return {}


_REGISTRY: dict[str, Callable[..., Reducer]] = {}
# Modules that register reducers when imported.
_MODULES = ('jaxvr.reducers.codec', 'jaxvr.reducers.sparse_mp4',
            'jaxvr.reducers.autoencoder',
            'jaxvr.reducers.carv', 'jaxvr.reducers.sparsegan')


def register(name: str, factory: Callable[..., Reducer]) -> None:
  """Makes ``create(name)`` build a reducer with ``factory()``."""
  _REGISTRY[name] = factory


def _load_all() -> None:
  for module in _MODULES:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as err:
      if not err.name or not err.name.startswith('jaxvr.reducers'):
        raise


def available() -> list[str]:
  """Names of every registered reducer."""
  _load_all()
  return sorted(_REGISTRY)


def create(name: str, **kwargs) -> Reducer:
  """Builds the reducer registered as ``name``."""
  _load_all()
  if name not in _REGISTRY:
    raise errors.ConfigError(
        f'reducer: unknown {name!r}; available: {", ".join(sorted(_REGISTRY))}')
  reducer = _REGISTRY[name](**kwargs)
  reducer.name = name
  return reducer
