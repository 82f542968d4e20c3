"""Sparse-GAN training step: 8-device data parallelism and a density smoke run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import sharding
from jaxvr.configs.sparse_gan import get_config
from jaxvr.errors import ConfigError, ShapeError
from jaxvr.sparsegan.models import build_models
from jaxvr.training import sparse_gan_step as ts

SMOKE_STEPS = 30


def synthetic_clips(key, n, t, size):
  """Smooth, slowly drifting colour fields: 4x4 noise upsampled to size."""
  k1, k2 = jax.random.split(key)
  lo = jax.random.uniform(k1, (n, 1, 4, 4, 3))
  drift = 0.05 * jax.random.normal(k2, (n, 1, 4, 4, 3))
  x = lo + drift * jnp.arange(t, dtype=jnp.float32)[None, :, None, None, None]
  x = jax.image.resize(x, (n, t, size, size, 3), 'bicubic')
  return np.asarray(jnp.clip(x, 0.0, 1.0))


@pytest.fixture(scope='module')
def smoke():
  cfg = get_config('smoke')
  mesh = sharding.make_mesh(8)
  models = build_models(cfg)
  init = ts.make_init(cfg, mesh, models)
  step = ts.make_train_step(cfg, mesh, models)
  d = cfg.data
  clips = synthetic_clips(jax.random.key(42), SMOKE_STEPS * d.batch_size,
                          d.num_frames, d.frame_size)
  clips = clips.reshape((SMOKE_STEPS, d.batch_size) + clips.shape[1:])
  return cfg, mesh, init, step, clips


def test_config_variants():
  cfg = get_config('smoke,random10')
  assert cfg.model.mask_mode == 'random' and cfg.model.density == 0.10
  assert cfg.data.frame_size == 16 and cfg.data.num_frames == 4
  robust = get_config('robust')
  assert robust.loss.gp_weight == 10.0 and robust.optim.warmup_steps == 5000
  assert robust.model.orthogonal_recurrent
  paper = get_config()
  assert paper.loss.gp_weight == 0.0 and paper.loss.alpha == 100.0
  assert (paper.data.batch_size, paper.data.num_frames,
          paper.data.frame_size) == (2, 20, 128)
  with pytest.raises(ConfigError, match='unknown'):
    get_config('smoke,huge')


def test_lr_decays_in_staircase():
  cfg = get_config()
  sched = lambda s: cfg.optim.gen_lr * cfg.optim.decay_rate ** (
      s // cfg.optim.decay_steps)
  import optax
  fn = optax.exponential_decay(cfg.optim.gen_lr, cfg.optim.decay_steps,
                               cfg.optim.decay_rate, staircase=True)
  for s in (0, 9_999, 10_000, 25_000):
    assert float(fn(s)) == pytest.approx(sched(s), rel=1e-6)


def test_step_on_eight_devices(smoke):
  cfg, mesh, init, step, clips = smoke
  state = init(jax.random.key(0))
  leaf = jax.tree.leaves(state.gen.params)[0]
  assert len(leaf.addressable_shards) == 8      # replicated on 8 devices
  batch = sharding.shard_batch(clips[0], mesh)
  assert len(batch.addressable_shards) == 8
  assert batch.addressable_shards[0].data.shape[0] == 1   # 8 clips / 8
  before = jax.tree.map(np.asarray, state.gen.params)
  critic_before = jax.tree.map(np.asarray, state.critic.params)
  new, metrics = step(state, batch)
  assert int(new.step) == 1
  metrics = jax.device_get(metrics)
  for k, v in metrics.items():
    assert np.isfinite(v), k
  # Both sides moved.
  moved = lambda a, b: max(float(np.abs(np.asarray(x) - y).max())
                           for x, y in zip(jax.tree.leaves(a),
                                           jax.tree.leaves(b), strict=True))
  assert moved(new.gen.params['mask'], before['mask']) > 0
  assert moved(new.gen.params['frame'], before['frame']) > 0
  assert moved(new.critic.params, critic_before) > 0
  with pytest.raises(ShapeError, match='video'):
    step(new, sharding.shard_batch(clips[0][..., :2], mesh))


def test_density_smoke_run(smoke):
  """Tiny training run: finite, bounded critics, density near the target."""
  cfg, mesh, init, step, clips = smoke
  d = cfg.model.density
  state = init(jax.random.key(1))
  history = []
  for i in range(SMOKE_STEPS):
    state, m = step(state, sharding.shard_batch(clips[i], mesh))
    history.append(m)
  history = jax.device_get(history)
  for m in history:
    for k, v in m.items():
      assert np.isfinite(v), k
    for k in ('d_s_real', 'd_s_fake', 'd_t_real', 'd_t_fake'):
      assert abs(m[k]) < 1e3
  rho = np.array([m['density'] for m in history])
  # The mean density never sits at zero (no collapse to an empty mask) ...
  assert (rho > 0).all(), rho
  # ... and ends inside [d/2, 2d] (mean of the last five steps).
  final = rho[-5:].mean()
  assert d / 2 <= final <= 2 * d, rho
  assert int(state.step) == SMOKE_STEPS


def _one_device_run(arg, steps, remat=False, seed=0, lambda_adv=None):
  cfg = get_config(arg)
  cfg.model.remat = remat
  if lambda_adv is not None:
    cfg.loss.lambda_adv = lambda_adv
  cfg.data.batch_size = 2
  models = build_models(cfg)
  state = ts.make_init(cfg, None, models)(jax.random.key(seed))
  step = ts.make_train_step(cfg, None, models, donate=False)
  d = cfg.data
  clips = synthetic_clips(jax.random.key(7), steps * 2, d.num_frames,
                          d.frame_size).reshape(
                              (steps, 2, d.num_frames, d.frame_size,
                               d.frame_size, 3))
  history = []
  for i in range(steps):
    prev = state
    state, m = step(state, clips[i])
    history.append(jax.device_get(m))
  return cfg, models, prev, clips[steps - 1], state, history


@pytest.mark.slow
def test_generator_gradient_equals_regenerating():
  """Reusing the critic phase's forward pass = regenerating after it."""
  from jaxvr.sparsegan import losses
  cfg, models, prev, clip, new, hist = _one_device_run('smoke', 2)
  lc = cfg.loss
  key = jax.random.fold_in(prev.rng, prev.step)
  k_gen = jax.random.split(key, 3)[0]
  cvars = {'params': new.critic.params, 'batch_stats': new.critic.batch_stats}

  def gen_loss(params):
    out = ts.generate(models, cfg, params, clip, k_gen, prev.step)
    u, b = out['raw'], out['mask']
    s_f, t_f = models.critics.apply(cvars, u, jax.lax.stop_gradient(b), False)
    adv = -jnp.mean(s_f) - lc.lambda_t * jnp.mean(t_f)
    return (lc.lambda_adv * adv
            + lc.alpha * losses.density_loss(b, cfg.model.density)
            + lc.beta * losses.reconstruction_loss(u, clip))

  loss, grads = jax.jit(jax.value_and_grad(gen_loss))(prev.gen.params)
  np.testing.assert_allclose(float(loss), hist[-1]['gen_loss'], rtol=1e-4)
  import optax
  np.testing.assert_allclose(float(optax.tree.norm(grads)),
                             hist[-1]['gen_grad_norm'], rtol=1e-3)


@pytest.mark.slow
def test_random_mask_baseline_and_robust_preset():
  cfg, _, _, _, state, hist = _one_device_run('smoke,random5', 3)
  assert 'mask' not in state.gen.params
  k = round(0.05 * 16 * 16)
  for m in hist:
    assert m['density'] == pytest.approx(k / 256)
    assert m['density_min'] == m['density_max']
    assert np.isfinite(m['gen_loss']) and np.isfinite(m['critic_loss'])
  cfg, _, _, _, state, hist = _one_device_run('smoke,robust', 3)
  assert cfg.optim.warmup_steps == 10
  for m in hist:   # warm-up: exact-density random masks, GP active
    assert m['density'] == pytest.approx(k / 256)
    assert m['gp'] > 0 and np.isfinite(m['critic_loss'])


@pytest.mark.slow
def test_remat_gives_the_same_step():
  _, _, _, _, plain, h1 = _one_device_run('smoke', 2, remat=False)
  _, _, _, _, remat, h2 = _one_device_run('smoke', 2, remat=True)
  for k in ('gen_loss', 'critic_loss', 'density', 'gen_grad_norm'):
    np.testing.assert_allclose(h1[-1][k], h2[-1][k], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(plain.gen.params),
                  jax.tree.leaves(remat.gen.params), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_reconstruction_only_recipe_leaves_the_critics_alone():
  """lambda_adv = 0 skips the critics; the generator still learns."""
  cfg, _, _, _, state, hist = _one_device_run('smoke,random5', 3,
                                              lambda_adv=0.0)
  init = ts.make_init(cfg, None, build_models(cfg))(jax.random.key(0))
  for a, b in zip(jax.tree.leaves(init.critic.params),
                  jax.tree.leaves(state.critic.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert all(m['critic_loss'] == 0.0 and m['adv_loss'] == 0.0 for m in hist)
  np.testing.assert_allclose(hist[-1]['gen_loss'],
                             cfg.loss.beta * hist[-1]['rec_loss'], rtol=1e-5)
  assert hist[-1]['gen_grad_norm'] > 0
