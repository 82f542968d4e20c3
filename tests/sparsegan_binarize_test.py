"""Straight-through rounding and exact-count random masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.sparsegan import mask_count, random_mask, straight_through_round


@pytest.mark.parametrize('jit', [False, True])
def test_ste_forward_is_exactly_binary(jit):
  c = jax.random.uniform(jax.random.key(0), (2, 3, 8, 8, 1))
  edge = jnp.array([0.0, 0.4999999, 0.5, 0.5000001, 1.0, -3.0, 7.5])
  f = jax.jit(straight_through_round) if jit else straight_through_round
  for x in (c, edge):
    b = np.asarray(f(x))
    assert b.dtype == np.float32 and b.shape == x.shape
    assert set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_array_equal(b, (np.asarray(x) >= 0.5).astype(np.float32))
  np.testing.assert_array_equal(np.asarray(f(edge)), [0, 0, 1, 1, 1, 0, 1])


def test_ste_gradient_is_identity():
  c = jax.random.uniform(jax.random.key(1), (4, 5))
  w = jax.random.normal(jax.random.key(2), (4, 5))
  g = jax.grad(lambda x: jnp.sum(w * straight_through_round(x)))(c)
  np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=0)
  # Forward mode agrees.
  _, t = jax.jvp(straight_through_round, (c,), (w,))
  np.testing.assert_array_equal(np.asarray(t), np.asarray(w))
  # Plain rounding would give a zero gradient; the STE must not.
  assert float(jnp.abs(jax.grad(lambda x: jnp.sum(jnp.round(x)))(c)).max()) == 0


def test_ste_rejects_integer_input():
  with pytest.raises(ShapeError, match='floating'):
    straight_through_round(jnp.array([0, 1]))


@pytest.mark.parametrize('density', [0.0, 0.05, 0.1, 0.5, 1.0])
def test_random_mask_exact_count_per_frame(density):
  shape = (3, 4, 16, 12, 1)
  m = np.asarray(random_mask(jax.random.key(3), shape, density))
  assert m.shape == shape and m.dtype == np.float32
  assert set(np.unique(m)) <= {0.0, 1.0}
  k = round(density * 16 * 12)
  assert mask_count(16, 12, density) == k
  np.testing.assert_array_equal(m.sum(axis=(2, 3, 4)), np.full((3, 4), k))


def test_random_mask_frames_independent_and_uniform():
  shape = (8, 16, 8, 8, 1)
  m = np.asarray(random_mask(jax.random.key(4), shape, 0.25))
  frames = m.reshape(-1, 64)
  # Distinct frames get distinct masks (128 frames of C(64, 16) choices).
  assert len({f.tobytes() for f in frames}) == len(frames)
  # Every position is kept with probability k/N = 0.25: 128 draws each,
  # standard deviation ~0.038, so 0.25 +- 0.15 is a > 3.9 sigma band.
  per_pixel = frames.mean(axis=0)
  assert np.all(np.abs(per_pixel - 0.25) < 0.15)
  assert abs(per_pixel.mean() - 0.25) < 1e-6
  other = np.asarray(random_mask(jax.random.key(5), shape, 0.25))
  assert not np.array_equal(m, other)
  again = np.asarray(random_mask(jax.random.key(4), shape, 0.25))
  np.testing.assert_array_equal(m, again)


def test_random_mask_bad_input():
  key = jax.random.key(0)
  with pytest.raises(ShapeError, match='shape'):
    random_mask(key, (2, 4, 8, 8, 3), 0.1)
  with pytest.raises(ShapeError, match='shape'):
    random_mask(key, (4, 8, 8, 1), 0.1)
  with pytest.raises(ConfigError, match='density'):
    random_mask(key, (1, 1, 8, 8, 1), 1.5)
  with pytest.raises(ConfigError, match='density'):
    random_mask(key, (1, 1, 8, 8, 1), 'lots')
