"""Sparse-GAN networks and losses: activations, spectral norm, shapes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr.errors import ConfigError, ShapeError, SizeError
from jaxvr.sparsegan import (
  InpaintingGenerator,
  MaskGenerator,
  SpatialCritic,
  TemporalCritic,
  keras_hard_sigmoid,
  losses,
)
from jaxvr.sparsegan.networks import max_pool2, upsample2
from jaxvr.training.sparse_gan_step import fast_compile_options

CLIP = (2, 3, 16, 16, 3)


def _init(module, *args):
  return jax.jit(module.init, compiler_options=fast_compile_options())(
      jax.random.key(0), *args)


@pytest.fixture(scope='module')
def inpaint():
  gen = InpaintingGenerator(width_mult=1 / 8)
  f = jax.random.uniform(jax.random.key(1), CLIP)
  b = (jax.random.uniform(jax.random.key(2), CLIP[:-1] + (1,)) < 0.2).astype(
      jnp.float32)
  z = 0.1 * jax.random.normal(jax.random.key(3), CLIP)
  return f, b, z, _init(gen, b * f, b, z), jax.jit(gen.apply)


@pytest.fixture(scope='module')
def spatial():
  critic = SpatialCritic(width_mult=1 / 8, padding='SAME')
  f = jax.random.uniform(jax.random.key(4), CLIP)
  m = jnp.ones(CLIP[:-1] + (1,))
  return critic, f, m, _init(critic, f, m)


def test_keras_hard_sigmoid_formula():
  x = jnp.array([-10.0, -2.5, -1.0, 0.0, 1.0, 2.5, 10.0])
  np.testing.assert_allclose(np.asarray(keras_hard_sigmoid(x)),
                             [0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0], atol=1e-7)
  # Not jax.nn.hard_sigmoid (relu6(x + 3) / 6, slope 1/6).
  assert abs(float(jax.nn.hard_sigmoid(1.0)) - 4 / 6) < 1e-6
  assert abs(float(keras_hard_sigmoid(1.0)) - float(jax.nn.hard_sigmoid(1.0))) > 0.03


def test_pool_and_upsample_match_reference_ops():
  x = jax.random.normal(jax.random.key(9), (2, 8, 6, 3))
  np.testing.assert_array_equal(
      np.asarray(max_pool2(x)),
      np.asarray(nn.max_pool(x, (2, 2), strides=(2, 2))))
  np.testing.assert_array_equal(
      np.asarray(upsample2(x)),
      np.asarray(jax.image.resize(x, (2, 16, 12, 3), 'nearest')))
  # Gradients agree with the library ops too (no ties in random data).
  w = jax.random.normal(jax.random.key(10), (2, 4, 3, 3))
  g1 = jax.grad(lambda v: jnp.sum(w * max_pool2(v)))(x)
  g2 = jax.grad(lambda v: jnp.sum(w * nn.max_pool(v, (2, 2), (2, 2))))(x)
  np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), atol=1e-6)


def test_inpainting_copies_known_pixels(inpaint):
  f, b, z, params, apply = inpaint
  u, dec = apply(params, b * f, b, z)
  u, dec = np.asarray(u), np.asarray(dec)
  assert u.shape == dec.shape == CLIP
  assert u.min() >= 0.0 and u.max() <= 1.0
  keep = np.broadcast_to(np.asarray(b) == 1, CLIP)
  np.testing.assert_array_equal(dec[keep], np.asarray(f)[keep])
  np.testing.assert_array_equal(dec[~keep], u[~keep])
  # Noise under kept pixels is ignored: only the holes' noise enters.
  z2 = z + 5.0 * b
  u2, _ = apply(params, b * f, b, z2)
  np.testing.assert_array_equal(np.asarray(u2), u)


def test_inpainting_is_causal_in_time(inpaint):
  """Only the bottleneck ConvGRU mixes frames, and only forward in time."""
  f, b, z, params, apply = inpaint
  base, _ = apply(params, b * f, b, z)
  f2 = f.at[:, 1].set(1.0 - f[:, 1])
  changed, _ = apply(params, b * f2, b, z)
  base, changed = np.asarray(base), np.asarray(changed)
  np.testing.assert_array_equal(changed[:, 0], base[:, 0])
  assert np.abs(changed[:, 1] - base[:, 1]).max() > 1e-6
  assert np.abs(changed[:, 2] - base[:, 2]).max() > 1e-6


@functools.partial(jax.jit, static_argnums=0,
                   compiler_options=fast_compile_options())
def _loss_and_grad(gen, params, known, mask, noise):
  loss = lambda p: jnp.sum(gen.apply(p, known, mask, noise)[0] ** 2)
  return jax.value_and_grad(loss)(params)


def test_frame_chunks_give_the_same_function(inpaint):
  """Chunks with the ConvGRU state carried (and recomputed) = one pass.

  T = 3 in chunks of 2: one scanned chunk plus a shorter tail.
  """
  f, b, z, params, _ = inpaint
  f, b, z = (x[:1, :, :8, :8] for x in (f, b, z))
  gens = [InpaintingGenerator(width_mult=1 / 8, frame_chunk=n) for n in (0, 2)]
  shapes = [jax.eval_shape(g.init, jax.random.key(0), b * f, b, z)
            for g in gens]
  assert jax.tree.structure(shapes[0]) == jax.tree.structure(shapes[1])
  (v0, g0), (v1, g1) = [_loss_and_grad(g, params, b * f, b, z) for g in gens]
  np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
  for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
    # Parameter gradients sum over frames in another order: f32 rounding.
    np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-4,
                               atol=1e-6)
  with pytest.raises(ConfigError, match='frame_chunk'):
    jax.eval_shape(InpaintingGenerator(width_mult=1 / 8, frame_chunk=-1).init,
                   jax.random.key(0), b * f, b, z)


def test_bundled_weights_fit_chunked_models():
  """Frame chunking leaves the parameter tree of the bundled weights as is."""
  from jaxvr.sparsegan import inference
  from jaxvr.sparsegan.models import build_models
  weights = inference.load()
  config = weights.config.copy_and_resolve_references()
  config.model.frame_chunk = 1
  models = build_models(config)
  size, t = weights.frame_size, weights.num_frames
  clip = jnp.zeros((1, t, size, size, 3))
  mask = clip[..., :1]
  want = jax.tree.map(lambda a: (a.shape, a.dtype), weights.params)
  got = {'frame': jax.eval_shape(models.frame.init, jax.random.key(0), clip,
                                 mask, clip)['params'],
         'mask': jax.eval_shape(models.mask.init, jax.random.key(0), clip,
                                mask)['params']}
  assert jax.tree.map(lambda a: (a.shape, a.dtype), got) == want


def test_critic_shapes_and_valid_size_check(spatial):
  s, f, m, vs = spatial
  assert jax.jit(s.apply)(vs, f, m).shape == CLIP[:2]
  with pytest.raises(SizeError, match='125'):
    SpatialCritic(width_mult=1 / 8).init(jax.random.key(0), f, m)
  with pytest.raises(ShapeError, match='clip'):
    jax.jit(s.apply)(vs, f[..., :2], m)
  t = TemporalCritic(width_mult=1 / 8, frame_diffs=True)
  out = jax.jit(t.apply)(_init(t, f), f)
  assert out.shape == CLIP[:1] and np.isfinite(np.asarray(out)).all()


def test_spectral_norm_sigma_matches_svd(spatial):
  """After power-iteration warm-up, every stored sigma ~ top singular value."""
  critic, f, m, vs = spatial

  @jax.jit
  def warm(stats):
    def body(_, st):
      _, upd = critic.apply({'params': vs['params'], 'batch_stats': st}, f, m,
                            True, mutable=['batch_stats'])
      return upd['batch_stats']
    return jax.lax.fori_loop(0, 60, body, stats)

  stats = warm(vs['batch_stats'])
  checked = 0
  for layer, entries in stats.items():
    inner = layer.removeprefix('sn_')
    kernel = np.asarray(vs['params'][inner]['kernel'], np.float64)
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]),
                        compute_uv=False)[0]
    sigma = float(entries[f'{inner}/kernel/sigma'])
    assert abs(sigma - top) / top < 0.02, (layer, sigma, top)
    checked += 1
  assert checked == 6   # five convolutions and the dense layer
  # Dividing by sigma leaves each kernel with unit top singular value.
  k = np.asarray(vs['params']['conv2']['kernel'], np.float64)
  sig = float(stats['sn_conv2']['conv2/kernel/sigma'])
  top = np.linalg.svd(k.reshape(-1, k.shape[-1]) / sig, compute_uv=False)[0]
  assert abs(top - 1.0) < 0.02


def test_density_and_reconstruction_losses():
  m = np.zeros((2, 3, 4, 5, 1), np.float32)
  m[0, 0, :2] = 1.0          # frame (0, 0): 10 of 20 pixels
  m[1, 2, 0, 0] = 1.0        # frame (1, 2): 1 of 20 pixels
  rho = np.asarray(losses.frame_density(jnp.asarray(m)))
  expected = np.zeros((2, 3))
  expected[0, 0], expected[1, 2] = 0.5, 0.05
  np.testing.assert_allclose(rho, expected, atol=1e-7)
  d = 0.05
  np.testing.assert_allclose(
      float(losses.density_loss(jnp.asarray(m), d)),
      np.mean(np.abs(expected - d)), rtol=1e-6)
  np.testing.assert_allclose(
      float(losses.density_loss(jnp.asarray(m), d, 'sq')),
      np.mean((expected - d) ** 2), rtol=1e-6)
  a = jnp.full((1, 1, 2, 2, 3), 0.3)
  np.testing.assert_allclose(float(losses.reconstruction_loss(a, a + 0.1)),
                             0.01, rtol=1e-5)
  np.testing.assert_allclose(
      float(losses.reconstruction_loss(a, a - 0.1, 'mae')), 0.1, rtol=1e-5)
  with pytest.raises(ConfigError, match='form'):
    losses.density_loss(jnp.asarray(m), d, 'l3')


def test_critic_losses_and_gradient_penalty():
  real = jnp.array([1.0, 3.0])
  fake = jnp.array([-1.0, 0.5])
  np.testing.assert_allclose(float(losses.critic_loss(real, fake)), -2.25)
  np.testing.assert_allclose(
      float(losses.critic_loss(real, fake, drift=0.1)), -2.25 + 0.5)
  np.testing.assert_allclose(float(losses.critic_loss(real, fake, 'hinge')),
                             (0 + 0) / 2 + (0 + 1.5) / 2)
  assert float(losses.generator_adversarial(fake)) == pytest.approx(0.25)
  # A linear critic D(x) = <w, x> has gradient norm |w| everywhere.
  w = jax.random.normal(jax.random.key(5), (3, 4, 4, 3))
  score = lambda x: jnp.sum(x * w, axis=(1, 2, 3, 4))
  x_r = jax.random.uniform(jax.random.key(6), (6, 3, 4, 4, 3))
  x_f = jax.random.uniform(jax.random.key(7), (6, 3, 4, 4, 3))
  gp = losses.gradient_penalty(score, x_r, x_f, jax.random.key(8))
  norm = float(jnp.sqrt(jnp.sum(w ** 2)))
  np.testing.assert_allclose(float(gp), (norm - 1.0) ** 2, rtol=1e-4)
  assert losses.preset('robust')['gp_weight'] == 10.0
  assert losses.preset('paper')['gp_weight'] == 0.0
  with pytest.raises(ConfigError, match='preset'):
    losses.preset('fancy')


def test_untrained_mask_prior_is_a_random_mask_of_the_density():
  """MaskGenerator(prior_density=d) starts as the Bernoulli(d) mask r < d."""
  gen = MaskGenerator(width_mult=1 / 8, prior_density=0.1)
  f = jax.random.uniform(jax.random.key(5), CLIP)
  r = jax.random.uniform(jax.random.key(6), CLIP[:-1] + (1,))
  c = jax.jit(gen.apply)(_init(gen, f, r), f, r)
  np.testing.assert_array_equal(np.asarray(c >= 0.5), np.asarray(r <= 0.1))
  # Confidences stay off the sigmoid's flat tails: every pixel can move.
  assert float(jnp.min(c)) > 0.01 and float(jnp.max(c)) < 0.99


def test_mask_width_mult_narrows_only_the_mask_generator():
  """``model.mask_width_mult`` sets G_M's channels; G_I keeps width_mult."""
  from jaxvr.configs import sparse_gan as sparse_gan_config
  from jaxvr.sparsegan.models import build_models
  config = sparse_gan_config.get_config('smoke')
  config.model.width_mult = 1 / 4
  default = build_models(config)
  assert default.mask.width_mult == default.frame.width_mult == 1 / 4
  config.model.mask_width_mult = 1 / 8
  narrow = build_models(config)
  assert (narrow.mask.width_mult, narrow.frame.width_mult) == (1 / 8, 1 / 4)
  clip = jnp.zeros((1, 4, 16, 16, 3))
  count = lambda m: sum(a.size for a in jax.tree.leaves(jax.eval_shape(
      m.init, jax.random.key(0), clip, clip[..., :1])))
  assert count(narrow.mask) < count(default.mask) / 3
  config.model.mask_width_mult = 0.0
  with pytest.raises(ConfigError, match='mask_width_mult'):
    build_models(config)
