"""Official ST-MAE PyTorch weights -> Flax parameters.

Feichtenhofer, Fan, Li, He, "Masked Autoencoders As Spatiotemporal Learners",
NeurIPS 2022. Two checkpoint flavours are understood:

* ``mae_st`` state dicts (``models_mae.MaskedAutoencoderViT``), bare or under
  ``"model"``;
* the released Kinetics pre-training files, converted from PySlowFast: the
  tensors sit under ``"model_state"``, the decoder blocks are
  ``pred_head.transforms.0.<i>.*``, the decoder norm is
  ``pred_head.transforms.0.<decoder_depth>.*``, the output layer
  ``pred_head.projections.0.*``, there is one joint ``decoder_pos_embed``
  and no ``decoder_cls_token``. Such a checkpoint only runs as trained with
  :func:`jaxvr.stmae.pyslowfast_config` (decoder heads, cls handling and
  target frames differ); :func:`config_for_state_dict` picks it.

Rules: ``Linear.weight [out, in]`` -> ``kernel = weight.T``; ``Conv3d.weight
[D, C, kt, p, p]`` -> ``kernel = weight.transpose(2, 3, 4, 1, 0)``; LayerNorm
``weight`` -> ``scale``; tables copied as they are; ``blocks.<i>`` ->
``blocks_<i>``. Every converted tensor is checked against the shape the Flax
model expects, and every key must be used exactly once.

For a ``scan_blocks`` config the result is stacked into that layout
(:func:`jaxvr.stmae.stack_blocks`). :func:`export_state_dict` applies the
rules backwards (Flax parameters -> an official ``mae_st`` state dict).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxvr.errors import CheckpointError, ConfigError
from jaxvr.stmae.forward import abstract_params
from jaxvr.stmae.model import (
    STMAEConfig,
    pyslowfast_config,
    stack_blocks,
    unstack_blocks,
)

_WRAPPERS = ('model_state', 'model', 'state_dict')
_PSF_BLOCK = re.compile(r'^pred_head\.transforms\.0\.(\d+)\.(.*)$')
_PSF_PROJ = re.compile(r'^pred_head\.projections\.0\.(.*)$')
_BLOCK = re.compile(r'^(decoder_blocks|blocks)\.(\d+)\.(.*)$')


def unwrap_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Returns the tensor mapping inside a checkpoint dict.

  Unwraps ``model_state`` (PySlowFast), ``model`` (mae_st) or ``state_dict``
  and strips a ``module.`` prefix (DistributedDataParallel) from every key.
  """
  if not isinstance(state_dict, Mapping):
    raise CheckpointError(
        f'state_dict: expected a mapping of names to arrays, got '
        f'{type(state_dict).__name__}')
  sd = state_dict
  for name in _WRAPPERS:
    inner = sd.get(name) if isinstance(sd, Mapping) else None
    if isinstance(inner, Mapping):
      sd = inner
      break
  keys = list(sd)
  if keys and all(isinstance(k, str) and k.startswith('module.') for k in keys):
    sd = {k[len('module.'):]: v for k, v in sd.items()}
  return dict(sd)


def is_pyslowfast(state_dict: Mapping[str, Any]) -> bool:
  """Whether a (unwrapped) state dict uses PySlowFast's decoder names."""
  return any(str(k).startswith('pred_head.') for k in state_dict)


def config_for_state_dict(state_dict: Mapping[str, Any],
                          config: STMAEConfig) -> STMAEConfig:
  """``config``, switched to the PySlowFast behaviour when the keys need it."""
  sd = unwrap_state_dict(state_dict)
  if is_pyslowfast(sd) and not config.decoder_cls_from_encoder:
    return pyslowfast_config(config)
  return config


def _rename_pyslowfast(sd: dict[str, Any], config: STMAEConfig) -> dict[str, Any]:
  out = {}
  for key, value in sd.items():
    m = _PSF_BLOCK.match(key)
    if m:
      i, rest = int(m.group(1)), m.group(2)
      if i < config.decoder_depth:
        key = f'decoder_blocks.{i}.{rest}'
      elif i == config.decoder_depth:
        key = f'decoder_norm.{rest}'
    m = _PSF_PROJ.match(key)
    if m:
      key = f'decoder_pred.{m.group(1)}'
    out[key] = value
  return out


def _split_fused_qkv(sd: dict[str, Any]) -> dict[str, Any]:
  out = {}
  for key, value in sd.items():
    if key.endswith('.attn.qkv.weight') or key.endswith('.attn.qkv.bias'):
      base, kind = key.rsplit('.qkv.', 1)
      for name, part in zip('qkv', np.split(np.asarray(value), 3, axis=0),
                            strict=True):
        out[f'{base}.{name}.{kind}'] = part
    else:
      out[key] = value
  return out


def _flax_path(key: str) -> tuple[str, ...]:
  parts = key.split('.')
  m = _BLOCK.match(key)
  if m:
    parts = [f'{m.group(1)}_{m.group(2)}'] + m.group(3).split('.')
  if parts[:2] == ['patch_embed', 'proj']:
    parts = ['patch_embed'] + parts[2:]
  return tuple(parts)


def _convert_leaf(path: tuple[str, ...], value: np.ndarray):
  """Maps one torch tensor to (flax path, array)."""
  if len(path) == 1:  # tokens and positional tables
    return path, value
  *module, leaf = path
  if leaf == 'bias':
    return path, value
  if leaf != 'weight':
    return None, value
  if value.ndim == 1:  # LayerNorm
    return (*module, 'scale'), value
  if value.ndim == 2:  # Linear
    return (*module, 'kernel'), value.T
  if value.ndim == 5:  # Conv3d
    return (*module, 'kernel'), value.transpose(2, 3, 4, 1, 0)
  return None, value


def _flatten(tree, prefix=()):
  if isinstance(tree, Mapping):
    for k, v in tree.items():
      yield from _flatten(v, prefix + (k,))
  else:
    yield prefix, tree


def convert_state_dict(state_dict: Mapping[str, Any],
                       config: STMAEConfig) -> dict:
  """Converts an official ST-MAE state dict to Flax parameters.

  Args:
    state_dict: torch key -> array (NumPy or anything ``np.asarray`` takes);
      a checkpoint wrapper with ``model_state``/``model`` is unwrapped.
    config: the model config the parameters are for. PySlowFast checkpoints
      need a PySlowFast config (:func:`config_for_state_dict`).

  Returns:
    Nested dict of float32 NumPy arrays, the tree ``init_params`` returns
    (``jax.device_put`` it to place it on devices).

  Raises:
    CheckpointError: a key is missing, unknown or left over, a shape does not
      fit ``config``, or the checkpoint flavour does not match ``config``.
  """
  sd = unwrap_state_dict(state_dict)
  if is_pyslowfast(sd):
    if config.cls_embed and not config.decoder_cls_from_encoder:
      raise CheckpointError(
          'state_dict: PySlowFast checkpoint (pred_head.* keys), but config '
          'uses the mae_st decoder; pass '
          'jaxvr.stmae.config_for_state_dict(state_dict, config) (or '
          'pyslowfast_config(config)) so the decoder runs as it was trained')
    sd = _rename_pyslowfast(sd, config)
  sd = _split_fused_qkv(sd)
  unscanned = dataclasses.replace(config, scan_blocks=False)
  expected = {path: leaf for path, leaf in _flatten(abstract_params(unscanned))}
  params: dict = {}
  unknown, bad_shape = [], []
  for key, value in sd.items():
    if hasattr(value, 'detach'):  # a torch tensor passed directly
      value = value.detach().cpu().float().numpy()
    value = np.asarray(value)
    if value.dtype != np.float32:
      value = value.astype(np.float32)
    path, array = _convert_leaf(_flax_path(str(key)), value)
    if path not in expected:
      unknown.append(str(key))
      continue
    want = tuple(expected.pop(path).shape)
    if tuple(array.shape) != want:
      bad_shape.append(f'{key} {tuple(value.shape)} (expected {want} after '
                       'conversion)')
      continue
    node = params
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = array
  problems = []
  if bad_shape:
    problems.append('wrong shapes: ' + ', '.join(bad_shape[:8]))
  if unknown:
    problems.append(f'{len(unknown)} unused keys: ' + ', '.join(unknown[:8]))
  if expected:
    missing = ['.'.join(p) for p in expected]
    problems.append(f'{len(missing)} missing parameters: ' +
                    ', '.join(missing[:8]))
  if problems:
    raise CheckpointError('state_dict: does not fit the config ('
                          + '; '.join(problems) + ')')
  return stack_blocks(params, config) if config.scan_blocks else params


def _torch_key(path: tuple[str, ...]) -> str:
  """Flax path -> official key (inverse of :func:`_flax_path`)."""
  head, *rest = path
  m = re.match(r'^(decoder_blocks|blocks)_(\d+)$', head)
  if m:
    head = f'{m.group(1)}.{m.group(2)}'
  elif head == 'patch_embed':
    head = 'patch_embed.proj'
  return '.'.join([head, *rest])


def _export_leaf(path: tuple[str, ...], value: np.ndarray):
  """Maps one Flax leaf to (official key, array) (inverse of _convert_leaf)."""
  *module, leaf = path
  if not module or leaf == 'bias':
    return _torch_key(path), value
  if leaf == 'scale':  # LayerNorm
    return _torch_key((*module, 'weight')), value
  if value.ndim == 2:  # Dense
    return _torch_key((*module, 'weight')), value.T
  return _torch_key((*module, 'weight')), value.transpose(4, 3, 0, 1, 2)


def export_state_dict(params, config: STMAEConfig) -> dict[str, np.ndarray]:
  """Flax parameters -> the official ``mae_st`` state dict.

  The inverse of :func:`convert_state_dict` for the ``mae_st`` flavour:
  ``kernel.T`` -> ``Linear.weight``, a ``[kt, p, p, C, D]`` conv kernel ->
  ``Conv3d.weight [D, C, kt, p, p]``, ``scale`` -> LayerNorm ``weight``,
  ``blocks_<i>`` -> ``blocks.<i>``, separate ``attn.q/k/v``.

  Args:
    params: parameters of ``config`` (either block layout).
    config: the model config.

  Returns:
    ``{official key: float32 ndarray}``, loadable with ``load_state_dict``
    into ``models_mae.MaskedAutoencoderViT`` of the same hyper-parameters.

  Raises:
    ConfigError: ``config`` is a PySlowFast variant (different key scheme).
  """
  if (config.decoder_cls_from_encoder or config.target_frames != 'linspace'
      or config.decoder_sep != config.sep_pos_embed):
    raise ConfigError('config: export_state_dict writes mae_st state dicts; '
                      'a PySlowFast-style config has no mae_st equivalent')
  if config.scan_blocks:
    params = unstack_blocks(params, config)
  return dict(_export_leaf(path, np.asarray(value, np.float32))
              for path, value in _flatten(params))


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a ``.pth`` file safely into ``{name: float32 ndarray}``.

  Uses ``torch.load(path, map_location='cpu', weights_only=True)``, so the
  pickle cannot run code. A ``model_state``/``model`` wrapper is unwrapped.

  Args:
    path: checkpoint file.

  Returns:
    Mapping of parameter names to float32 NumPy arrays.

  Raises:
    CheckpointError: torch is not installed, the file is missing or not a
      weights-only checkpoint, or it does not hold a state dict of tensors.
  """
  try:
    import torch
  except ImportError as e:
    raise CheckpointError(
        f'{path}: reading PyTorch checkpoints needs torch; install it with '
        "pip install 'jaxvr[torch]'") from e
  if not os.path.isfile(path):
    raise CheckpointError(f'{path}: checkpoint file not found')
  try:
    raw = torch.load(path, map_location='cpu', weights_only=True)
  except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError,
          AttributeError, TypeError) as e:
    raise CheckpointError(
        f'{path}: not a weights-only PyTorch checkpoint (refused to unpickle '
        f'anything but tensors and plain containers): {e}') from e
  if not isinstance(raw, Mapping):
    raise CheckpointError(f'{path}: expected a state dict, got '
                          f'{type(raw).__name__}')
  sd = unwrap_state_dict(raw)
  out = {}
  for key, value in sd.items():
    if not isinstance(value, torch.Tensor):
      raise CheckpointError(
          f'{path}: expected a state dict of tensors, entry {key!r} is a '
          f'{type(value).__name__}')
    out[str(key)] = value.detach().to(torch.float32).numpy()
  if not out:
    raise CheckpointError(f'{path}: the state dict is empty')
  return out


def convert_checkpoint_file(pth_path: str | os.PathLike,
                            config: STMAEConfig) -> dict:
  """:func:`load_torch_checkpoint` then :func:`convert_state_dict`.

  For a PySlowFast checkpoint, convert with
  ``config_for_state_dict(load_torch_checkpoint(path), config)`` to get the
  config the parameters must run with.
  """
  return convert_state_dict(load_torch_checkpoint(pth_path), config)


def param_count(params) -> int:
  """Number of scalars in a parameter tree."""
  return int(sum(np.prod(np.shape(v)) for _, v in _flatten(params)))


def config_dict(config: STMAEConfig) -> dict:
  """JSON-friendly dict of a config (to store next to converted weights)."""
  return dataclasses.asdict(config)
