"""Checkpoints: round trips, typed keys, device-count changes, errors."""

import json
import os
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import struct

from jaxvr import files
from jaxvr.errors import CheckpointError
from jaxvr.training import checkpoint, sharding


@struct.dataclass
class _State:
  """A TrainState-like pytree: params, optimizer state, step, typed key."""
  params: dict
  opt_state: object
  step: jax.Array
  rng: jax.Array


def _make_state(seed: int) -> _State:
  key = jax.random.key(seed)
  k1, k2 = jax.random.split(key)
  params = {'w': jax.random.normal(k1, (4, 3)),
            'b': jax.random.normal(k2, (3,)).astype(jnp.bfloat16)}
  opt_state = optax.adamw(1e-3).init(params)
  return _State(params=params, opt_state=opt_state, step=jnp.int32(7),
                rng=jax.random.fold_in(key, 99))


def _assert_same(a, b):
  leaves_a, tree_a = jax.tree.flatten(jax.device_get(a))
  leaves_b, tree_b = jax.tree.flatten(jax.device_get(b))
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b, strict=True):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(x, y)


def test_round_trip_with_typed_key_data_and_config(tmp_path):
  mesh = sharding.make_mesh()
  rep = sharding.replicated(mesh)
  state = jax.device_put(_make_state(0), rep)
  config = ml_collections.ConfigDict({'lr': 1e-3, 'size': (8, 8),
                                      'model': {'depth': 2}})
  with checkpoint.Checkpointer(tmp_path / 'ckpt', max_to_keep=2) as ckpt:
    assert ckpt.latest_step() is None
    for step in (1, 2, 3):
      ckpt.save(step, state, data_state={'seed': 0, 'position': step},
                config=config)
    target = sharding.abstract_with_sharding(
        jax.eval_shape(lambda: _make_state(1)), rep)
    restored = ckpt.restore(target)
    assert ckpt.all_steps() == [2, 3]  # max_to_keep=2 dropped step 1.
    assert restored.step == 3
    assert restored.data_state == {'seed': 0, 'position': 3}
    assert restored.config == {'lr': 1e-3, 'size': [8, 8],
                               'model': {'depth': 2}}
    assert ckpt.restore_config(2) == restored.config
    assert isinstance(restored.state, _State)
    assert jax.dtypes.issubdtype(restored.state.rng.dtype,
                                 jax.dtypes.prng_key)
    assert restored.state.params['w'].sharding == rep
    _assert_same(restored.state, state)
    # The restored key draws the same numbers as the saved one.
    np.testing.assert_array_equal(
        jax.random.uniform(restored.state.rng, (3,)),
        jax.random.uniform(state.rng, (3,)))
    assert ckpt.restore(target, step=2).data_state['position'] == 2


def test_async_save_survives_donation(tmp_path):
  mesh = sharding.make_mesh()
  rep = sharding.replicated(mesh)
  params = jax.device_put({'w': jnp.arange(12.0).reshape(4, 3)}, rep)
  expected = np.asarray(params['w'])
  bump = jax.jit(lambda p: jax.tree.map(lambda x: x + 1, p),
                 donate_argnums=0, out_shardings=rep)
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, params)
    params = bump(params)  # Deletes the saved buffers while writing.
    ckpt.wait_until_finished()
    restored = ckpt.restore(jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
        params))
  np.testing.assert_array_equal(restored.state['w'], expected)


def test_missing_checkpoint_names_the_path(tmp_path):
  target = {'w': jax.ShapeDtypeStruct((2,), jnp.float32)}
  with checkpoint.Checkpointer(tmp_path / 'none') as ckpt:
    with pytest.raises(CheckpointError, match='none.*no checkpoint found'):
      ckpt.restore(target)
    with pytest.raises(CheckpointError, match='no checkpoint found'):
      ckpt.restore_config()
    ckpt.save(5, {'w': jnp.ones(2)})
    with pytest.raises(CheckpointError, match=r'no step 4 \(available: \[5\]\)'):
      ckpt.restore(target, step=4)
    bad = {'w': jax.ShapeDtypeStruct((3,), jnp.float32)}
    with pytest.raises(CheckpointError, match='cannot restore'):
      ckpt.restore(bad)
  with pytest.raises(CheckpointError, match='weights.*params/'):
    checkpoint.load_params(tmp_path / 'weights')


def test_save_and_load_params(tmp_path):
  params = _make_state(3).params
  out = checkpoint.save_params(tmp_path / 'weights', params,
                               {'embed_dim': 8, 'dtype': jnp.bfloat16})
  assert sorted(os.listdir(out)) == ['config.json', 'params']
  loaded, config = checkpoint.load_params(out)
  _assert_same(loaded, params)
  assert config == {'dtype': str(jnp.bfloat16), 'embed_dim': 8}
  rep = sharding.replicated(sharding.make_mesh())
  target = sharding.abstract_with_sharding(jax.eval_shape(lambda: params), rep)
  loaded, _ = checkpoint.load_params(out, target)
  assert loaded['w'].sharding == rep
  _assert_same(loaded, params)
  # Saving again replaces the weights.
  checkpoint.save_params(out, jax.tree.map(lambda x: x * 0, params), {})
  loaded, config = checkpoint.load_params(out)
  assert config == {} and float(jnp.abs(loaded['w']).sum()) == 0.0



def test_float16_weights_load_as_float32(tmp_path):
  params = {'w': jnp.linspace(-2.0, 3.0, 12).reshape(3, 4),
            'step': jnp.arange(3, dtype=jnp.int32)}
  half = jax.tree.map(
      lambda x: x.astype(jnp.float16) if x.dtype == jnp.float32 else x, params)
  out = checkpoint.save_params(tmp_path / 'half', half, {})
  stored, _ = checkpoint.load_params(out)
  assert stored['w'].dtype == jnp.float16
  loaded, _ = checkpoint.load_params(out, float_dtype=jnp.float32)
  assert loaded['w'].dtype == jnp.float32 and loaded['step'].dtype == jnp.int32
  np.testing.assert_array_equal(loaded['w'], half['w'].astype(jnp.float32))
  np.testing.assert_array_equal(loaded['step'], params['step'])


def test_failed_save_params_keeps_previous_export(tmp_path, monkeypatch):
  params = _make_state(3).params
  out = checkpoint.save_params(tmp_path / 'weights', params, {'width': 8})
  files.write_text(out / 'training_clips.json', '{}')

  def fail(*args, **kwargs):
    raise OSError('disk full')

  # The new params are written; the save then fails before it completes.
  monkeypatch.setattr(checkpoint.files, 'write_json', fail)
  with pytest.raises(OSError, match='disk full'):
    checkpoint.save_params(out, jax.tree.map(lambda x: x * 0, params), {})
  monkeypatch.undo()
  assert sorted(os.listdir(tmp_path)) == ['weights']
  loaded, config = checkpoint.load_params(out)
  _assert_same(loaded, params)
  assert config == {'width': 8}
  # A complete save replaces the export and keeps the training record.
  checkpoint.save_params(out, jax.tree.map(lambda x: x * 0, params), {})
  assert sorted(os.listdir(out)) == ['config.json', 'params',
                                     'training_clips.json']
  assert float(jnp.abs(checkpoint.load_params(out)[0]['w']).sum()) == 0.0


_RESTORE_ON_ONE_DEVICE = textwrap.dedent('''
  import json, sys
  import jax
  jax.config.update('jax_num_cpu_devices', 1)
  import numpy as np
  from jaxvr.training import checkpoint, sharding
  mesh = sharding.make_mesh()
  rep, bat = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  target = {
      'params': jax.ShapeDtypeStruct((4, 3), np.float32, sharding=rep),
      'batch': jax.ShapeDtypeStruct((8, 2), np.float32, sharding=bat),
      'rng': jax.eval_shape(lambda: jax.random.key(0)),
  }
  target['rng'] = jax.ShapeDtypeStruct((), target['rng'].dtype, sharding=rep)
  with checkpoint.Checkpointer(sys.argv[1]) as ckpt:
    r = ckpt.restore(target)
  print(json.dumps({
      'devices': jax.device_count(),
      'step': r.step,
      'params': np.asarray(r.state['params']).tolist(),
      'batch': np.asarray(r.state['batch']).tolist(),
      'rng': np.asarray(jax.random.key_data(r.state['rng'])).tolist(),
      'shards': len(r.state['batch'].addressable_shards),
  }))
''')


def test_restore_from_8_devices_on_1(tmp_path):
  mesh = sharding.make_mesh()
  assert mesh.size == 8
  rep, bat = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  state = {
      'params': jax.device_put(np.arange(12.0, dtype=np.float32)
                               .reshape(4, 3), rep),
      'batch': jax.device_put(np.arange(16.0, dtype=np.float32)
                              .reshape(8, 2), bat),
      'rng': jax.device_put(jax.random.key(5), rep),
  }
  assert len(state['batch'].addressable_shards) == 8
  with checkpoint.Checkpointer(tmp_path) as ckpt:
    ckpt.save(11, state)
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  t0 = time.time()
  proc = subprocess.run(
      [sys.executable, '-c', _RESTORE_ON_ONE_DEVICE, str(tmp_path)],
      capture_output=True, text=True, env=env, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['devices'] == 1 and out['shards'] == 1 and out['step'] == 11
  np.testing.assert_array_equal(out['params'], np.asarray(state['params']))
  np.testing.assert_array_equal(out['batch'], np.asarray(state['batch']))
  np.testing.assert_array_equal(out['rng'],
                                jax.random.key_data(state['rng']))
  assert time.time() - t0 < 60
