"""Resize, crops, normalization and luma."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import errors, video


def test_normalize_round_trip():
  x = np.arange(256, dtype=np.uint8).reshape(1, 4, 64, 1)
  n = video.normalize(x)
  assert float(n[0, 0, 0, 0]) == pytest.approx(-0.45 / 0.225)
  np.testing.assert_allclose(video.denormalize(n), x, atol=1e-4)


def test_luma_bt601_limited_range():
  rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0],
                  [0, 0, 255]], np.uint8)
  y = np.asarray(video.luma(rgb))
  np.testing.assert_allclose(y, [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966],
                             atol=1e-4)
  with pytest.raises(errors.ShapeError, match='RGB'):
    video.luma(np.zeros((2, 4)))


def test_luma_product_runs_at_highest_precision():
  """The RGB -> Y dot is lowered with HIGHEST, even under a bf16 default."""
  rgb = np.zeros((2, 4, 4, 3), np.uint8)
  for context in (contextlib.nullcontext(),
                  jax.default_matmul_precision('bfloat16')):
    with context:
      text = jax.jit(video.luma).lower(rgb).as_text()
    dots = [line for line in text.splitlines() if 'dot_general' in line]
    assert dots, text
    assert all('precision = [HIGHEST, HIGHEST]' in d for d in dots), dots


def test_luma_matches_float64_formula():
  rgb = np.random.default_rng(0).integers(0, 256, (3, 16, 20, 3), np.uint8)
  want = 16.0 + rgb.astype(np.float64) @ (np.array([65.481, 128.553, 24.966])
                                          / 255.0)
  with jax.default_matmul_precision('bfloat16'):
    got = np.asarray(jax.jit(video.luma)(rgb))
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_resize_and_short_side():
  x = jnp.ones((2, 3, 30, 40, 3)) * 7.0
  y = video.resize_short_side(x, 15)
  assert y.shape == (2, 3, 15, 20, 3)
  np.testing.assert_allclose(y, 7.0, atol=1e-5)  # constant stays constant
  assert video.short_side_size(144, 176, 128) == (128, 156)


def test_antialiased_downscale_averages():
  stripes = jnp.tile(jnp.array([0.0, 255.0]), 32).reshape(1, 1, 64, 1)
  stripes = jnp.broadcast_to(stripes, (1, 64, 64, 1))
  small = video.resize(stripes, (8, 8), method='linear')
  np.testing.assert_allclose(small[:, 1:-1, 1:-1], 127.5, atol=1.0)


def test_crops():
  x = jnp.arange(10 * 12).reshape(1, 10, 12, 1)
  c = video.center_crop(x, (4, 6))
  np.testing.assert_array_equal(c, x[:, 3:7, 3:9])
  r1 = video.random_crop(jax.random.key(0), x, (4, 6))
  r2 = video.random_crop(jax.random.key(0), x, (4, 6))
  np.testing.assert_array_equal(r1, r2)
  assert r1.shape == (1, 4, 6, 1)
  # The crop is a contiguous window of x.
  y0, x0 = int(r1[0, 0, 0, 0]) // 12, int(r1[0, 0, 0, 0]) % 12
  np.testing.assert_array_equal(r1, x[:, y0:y0 + 4, x0:x0 + 6])
  with pytest.raises(errors.SizeError, match='does not fit'):
    video.center_crop(x, (11, 4))


def test_pad_even_edge_pads_odd_sizes_only():
  from jaxvr.video.transforms import pad_even
  v = np.arange(3 * 5 * 4 * 3, dtype=np.uint8).reshape(3, 5, 4, 3)
  out = pad_even(v)
  assert out.shape == (3, 6, 4, 3)
  np.testing.assert_array_equal(out[:, 5], v[:, 4])
  assert pad_even(v, time=True).shape == (4, 6, 4, 3)
  even = v[:, :4]
  assert pad_even(even) is even
