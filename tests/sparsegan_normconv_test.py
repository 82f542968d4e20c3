"""Multi-scale normalized convolution (the sparse-pixel floor)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.sparsegan import normconv


def test_blur_matches_direct_convolution():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 40, 5)).astype(np.float32)
  for sigma in (1.0, 3.0, 6.0):
    r = int(np.ceil(3 * sigma))
    kernel = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
    want = np.stack([np.stack([np.convolve(x[i, :, c], kernel, 'same')
                               for c in range(5)], -1) for i in range(3)])
    got = np.asarray(normconv._blur_axis(jnp.asarray(x), 1, sigma))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_constant_video_is_restored_exactly_from_any_mask():
  rng = np.random.default_rng(1)
  known = np.broadcast_to(np.float32([0.2, 0.5, 0.9]), (5, 24, 32, 3))
  mask = (rng.random((5, 24, 32, 1)) < 0.03).astype(np.float32)
  mask[2] = 0   # a frame with no kept pixel borrows from its neighbours
  out = normconv.normalized_convolution(known * mask, mask)
  np.testing.assert_allclose(out, known, atol=1e-4)


def test_kept_pixels_are_copied_and_full_masks_are_identity():
  rng = np.random.default_rng(2)
  video = rng.integers(0, 256, (4, 16, 16, 3), np.uint8)
  mask = rng.random((4, 16, 16)) < 0.1
  out = normconv.fill_video(video, mask)
  assert out.dtype == np.uint8 and out.shape == video.shape
  np.testing.assert_array_equal(out[mask], video[mask])
  np.testing.assert_array_equal(
      normconv.fill_video(video, np.ones((4, 16, 16), bool)), video)


def test_fine_scale_wins_where_pixels_are_dense():
  """Left half dense, right half sparse: a step edge stays sharp where the
  kept pixels allow it (the coarse scales alone would blur it)."""
  video = np.zeros((1, 32, 64, 1), np.float32)
  video[:, :16] = 1.0
  mask = np.zeros((1, 32, 64, 1), np.float32)
  mask[:, :, :32] = 1.0                  # dense: every pixel
  mask[:, ::8, 32::8] = 1.0              # sparse
  out = np.asarray(normconv.normalized_convolution(video * mask, mask))
  np.testing.assert_allclose(out[0, :, :32], video[0, :, :32], atol=1e-6)
  # In the sparse half, rows well inside each region keep their level.
  assert out[0, 4, 40:].mean() > 0.85 and out[0, 28, 40:].mean() < 0.15


def test_bad_input():
  with pytest.raises(ShapeError, match='mask'):
    normconv.normalized_convolution(jnp.zeros((2, 8, 8, 3)),
                                    jnp.zeros((2, 8, 8, 3)))
  with pytest.raises(ConfigError, match='sigmas'):
    normconv.normalized_convolution(jnp.zeros((2, 8, 8, 3)),
                                    jnp.zeros((2, 8, 8, 1)), sigmas=())
  with pytest.raises(ShapeError, match='fill_video'):
    normconv.fill_video(np.zeros((2, 8, 8, 3), np.uint8),
                        np.zeros((2, 8, 9), bool))
