"""The shared training loop: exact resume, SIGTERM save, NaN guard, logs."""

import dataclasses
import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax.training import train_state

from jaxvr.errors import ConfigError, TrainingDivergedError
from jaxvr.training import data as data_lib
from jaxvr.training import loop, sharding, writers

BATCH, FRAMES, SIZE = 8, 2, (8, 8)


class _Regressor(nn.Module):
  """Clip -> mean brightness of its last frame (a learnable target)."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = x.reshape(x.shape[0], -1)
    x = nn.gelu(nn.Dense(16)(x))
    x = nn.Dropout(0.2, deterministic=not train)(x)
    return nn.Dense(1)(x)[:, 0]


class _State(train_state.TrainState):
  rng: jax.Array


@pytest.fixture(scope='session')
def tiny():
  """Mesh, init function and jitted steps shared by the loop tests."""
  mesh = sharding.make_mesh()
  model = _Regressor()
  tx = optax.adam(3e-3)

  def init_fn():
    key = jax.random.key(0)
    x = jnp.zeros((1, FRAMES, *SIZE, 3))
    params = model.init(key, x, train=False)['params']
    return _State.create(apply_fn=model.apply, params=params, tx=tx,
                         rng=jax.random.fold_in(key, 1))

  def step(state, batch, nan_from=None):
    key = jax.random.fold_in(state.rng, state.step)
    x = batch['video'].astype(jnp.float32) / 255.0
    y = x[:, -1].mean(axis=(1, 2, 3))

    def loss_fn(p):
      pred = state.apply_fn({'params': p}, x, train=True,
                            rngs={'dropout': key})
      return jnp.mean((pred - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    if nan_from is not None:
      loss = jnp.where(state.step >= nan_from, jnp.nan, loss)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads)}
    return state.apply_gradients(grads=grads), metrics

  rep, bat = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  jit = lambda f: jax.jit(f, donate_argnums=(0,), in_shardings=(rep, bat),
                          out_shardings=(rep, rep))
  return dict(mesh=mesh, init_fn=jax.jit(init_fn), rep=rep, step=jit(step),
              nan_step=jit(lambda s, b: step(s, b, nan_from=3)))


def _config(**kw):
  c = ml_collections.ConfigDict(dict(total_steps=6, log_every=1, ckpt_every=3,
                                     keep_ckpts=5, seed=0))
  c.update(kw)
  return c


def _run(tiny, workdir, config, step_fn=None, callbacks=(), evaluate=None):
  data = data_lib.SyntheticClips(FRAMES, SIZE, batch_size=BATCH, seed=3)
  with loop.open_checkpointer(workdir, config) as ckpt:
    state, start = loop.restore_or_init(ckpt, tiny['init_fn'], tiny['rep'],
                                        data, config=config)
    result = loop.train_loop(state, step_fn or tiny['step'], data, config,
                             workdir, mesh=tiny['mesh'], checkpointer=ckpt,
                             start_step=start, callbacks=callbacks,
                             evaluate=evaluate)
    return start, result, ckpt.all_steps()


def test_sigterm_saves_and_resume_is_exact(tiny, tmp_path):
  config = _config()
  _, full, steps_full = _run(tiny, tmp_path / 'full', config)
  assert not full.preempted and full.step == 6
  assert steps_full == [3, 6]

  def preempt(step, state, metrics):
    del state, metrics
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  part = tmp_path / 'part'
  start, first, steps = _run(tiny, part, config, callbacks=[preempt])
  assert start == 0 and first.preempted and first.step == 2
  assert steps == [2]  # Saved on SIGTERM, off the ckpt_every grid.
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
  start, second, steps = _run(tiny, part, config)
  assert start == 2 and second.step == 6 and not second.preempted
  assert steps == [2, 3, 6]

  full_log, part_log = loop.read_metrics(tmp_path / 'full'), loop.read_metrics(part)
  assert [r['step'] for r in full_log] == [1, 2, 3, 4, 5, 6]
  assert [r['step'] for r in part_log] == [1, 2, 3, 4, 5, 6]
  assert [r['metrics'] for r in part_log] == [r['metrics'] for r in full_log]
  losses = [r['metrics']['loss'] for r in full_log]
  assert losses[-1] < losses[0]
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(full.state.params),
               jax.device_get(second.state.params))
  assert int(second.state.step) == 6
  # Nothing left to do: a third call restores step 6 and returns at once.
  start, third, _ = _run(tiny, part, config)
  assert start == 6 and third.step == 6 and len(loop.read_metrics(part)) == 6


def test_nan_guard_raises_without_saving(tiny, tmp_path):
  config = _config(total_steps=8, log_every=4, ckpt_every=2)
  with pytest.raises(TrainingDivergedError, match="'loss'.*step 4"):
    _run(tiny, tmp_path, config, step_fn=tiny['nan_step'])
  with loop.open_checkpointer(tmp_path, config) as ckpt:
    # Step 4 is on the checkpoint grid but diverged: only step 2 exists.
    assert ckpt.all_steps() == [2]
  # Step 2's save flushed steps 1-2; the window holding the NaN is not logged.
  records = loop.read_metrics(tmp_path)
  assert [r['step'] for r in records] == [2]
  assert np.isfinite(records[0]['metrics']['loss'])


def test_stale_log_records_are_dropped_on_resume(tiny, tmp_path):
  config = _config(total_steps=4, ckpt_every=2)
  _run(tiny, tmp_path, config)
  with loop.open_checkpointer(tmp_path, config) as ckpt:
    ckpt._manager.delete(4)  # As if the process died before saving step 4.
  with open(tmp_path / loop.METRICS_FILE, 'a') as f:
    f.write('{"step": 5, "metr')  # A record cut off by the crash.
  start, result, _ = _run(tiny, tmp_path, config)
  assert start == 2 and result.step == 4
  assert [r['step'] for r in loop.read_metrics(tmp_path)] == [1, 2, 3, 4]
  cfg = (tmp_path / 'config.json').read_text()
  assert '"total_steps": 4' in cfg


def test_config_changes_name_fields_outside_the_free_list():
  saved = {'total_steps': 4, 'log_every': 1, 'optim': {'lr': 0.1},
           'data': {'batch_size': 8, 'val_dir': 'a', 'crop_scale': [0.5, 1]}}
  current = {'total_steps': 6, 'log_every': 5, 'optim': {'lr': 0.1},
             'data': {'batch_size': 4, 'val_dir': 'b', 'crop_scale': (0.7, 1),
                      'flip': True}}
  assert loop.config_changes(saved, current) == [
      'data.batch_size: 8 -> 4', 'data.crop_scale: [0.5, 1] -> [0.7, 1]',
      'data.flip: (absent) -> true', 'total_steps: 4 -> 6']
  assert loop.config_changes(saved, saved) == []


def test_finish_exports_only_finished_runs(capsys):
  written = []
  stopped = loop.LoopResult(state=None, step=2, preempted=True,
                            last_metrics={})
  loop.finish(stopped, lambda: written.append(1), 'stmae')
  assert written == []
  assert capsys.readouterr().out == (
      'stmae preempted at step 2: checkpoint saved; no export written; run '
      'the same command again to resume\n')
  done = dataclasses.replace(stopped, step=6, preempted=False,
                             last_metrics={'loss': 0.5})
  loop.finish(done, lambda: written.append(1), 'stmae')
  assert written == [1]
  assert capsys.readouterr().out == (
      "stmae finished at step 6: {'loss': 0.5}\n")


def test_bad_config_is_rejected(tiny, tmp_path):
  with pytest.raises(ConfigError, match='config.log_every'):
    _run(tiny, tmp_path, _config(log_every=0))


def _evaluate(state):
  """Validation: the loss on a fixed batch, plus a small image."""
  x = data_lib.SyntheticClips(FRAMES, SIZE, batch_size=4, seed=99).batch_at(0)
  x = jnp.asarray(x['video'], jnp.float32) / 255.0
  pred = state.apply_fn({'params': state.params}, x, train=False)
  loss = float(jnp.mean((pred - x[:, -1].mean(axis=(1, 2, 3))) ** 2))
  return {'val_loss': loss}, {'grid': np.zeros((4, 6, 3), np.uint8)}


def test_validation_every_k_steps_resumes_and_reaches_tensorboard(tiny,
                                                                 tmp_path):
  config = _config(total_steps=6, eval_every=2, tensorboard=True)
  part = tmp_path / 'part'

  def preempt(step, state, metrics):
    del state, metrics
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  _run(tiny, part, config, callbacks=[preempt], evaluate=_evaluate)
  _run(tiny, part, config, evaluate=_evaluate)
  _run(tiny, tmp_path / 'full', config, evaluate=_evaluate)
  part_val = writers.read_jsonl(part / loop.VALIDATION_FILE)
  full_val = writers.read_jsonl(tmp_path / 'full' / loop.VALIDATION_FILE)
  assert [r['step'] for r in full_val] == [0, 2, 4, 6]
  assert part_val == full_val   # resumed validation equals uninterrupted
  assert full_val[-1]['metrics']['val_loss'] < full_val[0]['metrics'][
      'val_loss']
  events = list((part / loop.TENSORBOARD_DIR).glob('events.out.tfevents.*'))
  assert events and all(e.stat().st_size > 0 for e in events)
  # No evaluate function or eval_every=0: no validation file.
  _run(tiny, tmp_path / 'none', _config(total_steps=2, eval_every=0),
       evaluate=_evaluate)
  assert not (tmp_path / 'none' / loop.VALIDATION_FILE).exists()


def test_jsonl_writer_drops_later_and_torn_records(tmp_path):
  w = writers.JsonlWriter(tmp_path / 'v.jsonl')
  for step in (0, 5, 10):
    w.scalars(step, {'psnr': 20.0 + step, 'bad': float('nan')})
  with open(w.path, 'a') as f:
    f.write('{"step": 15, "met')
  w.truncate_after(5)
  records = writers.read_jsonl(w.path)
  assert [r['step'] for r in records] == [0, 5]
  assert records[1]['metrics'] == {'psnr': 25.0, 'bad': None}


def test_image_grid_layout():
  rows = [np.ones((3, 4, 5, 3), np.float32), np.zeros((2, 4, 5, 1), np.uint8)]
  grid = writers.image_grid(rows, gap=1)
  assert grid.shape == (2 * 4 + 1, 3 * 5 + 2, 3) and grid.dtype == np.uint8
  assert (grid[:4, :5] == 255).all() and (grid[5:, :5] == 0).all()
  assert (grid[5:, 12:] == 255).all()   # short second row padded with white
