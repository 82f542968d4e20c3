"""Tests for jaxvr.video.tubes: tubelet order and chunk grids."""

import numpy as np
import pytest

from jaxvr.errors import ShapeError, SizeError
from jaxvr.video import tubes


def test_patchify_matches_official_target(fixtures_dir):
  # The fixture's target_raw is the official patchify of the input (u = 2).
  d = np.load(fixtures_dir / 'stmae_parity_a.npz')
  video = d['input'].transpose(0, 2, 3, 4, 1)  # N,C,T,H,W -> N,T,H,W,C
  out = np.asarray(tubes.patchify(video, (2, 8, 8)))
  np.testing.assert_array_equal(out, d['target_raw'])


def test_patchify_index_formula_and_inverse():
  rng = np.random.default_rng(0)
  n, t, h, w, c, u, ph, pw = 2, 4, 6, 9, 2, 2, 3, 3
  video = rng.standard_normal((n, t, h, w, c)).astype(np.float32)
  out = np.asarray(tubes.patchify(video, (u, ph, pw)))
  gh, gw = h // ph, w // pw
  assert out.shape == (n, (t // u) * gh * gw, u * ph * pw * c)
  for idx in [(1, 0, 0, 0, 0, 0, 0, 1), (0, 1, 1, 2, 1, 2, 0, 0),
              (1, 1, 1, 2, 0, 1, 2, 1)]:
    b, tt, hh, ww, s, r, col, ch = idx
    token = tt * gh * gw + hh * gw + ww
    value = ((s * ph + r) * pw + col) * c + ch
    assert out[b, token, value] == video[b, tt * u + s, hh * ph + r,
                                         ww * pw + col, ch]
  back = tubes.unpatchify(out, (t // u, gh, gw), (u, ph, pw), channels=c)
  np.testing.assert_array_equal(np.asarray(back), video)


def test_patchify_errors():
  with pytest.raises(SizeError, match='video'):
    tubes.patchify(np.zeros((1, 3, 8, 8, 3)), (2, 4, 4))
  with pytest.raises(ShapeError, match='video'):
    tubes.patchify(np.zeros((3, 8, 8, 3)), (1, 4, 4))
  with pytest.raises(ShapeError, match='tokens'):
    tubes.unpatchify(np.zeros((1, 5, 48)), (1, 2, 2), (1, 4, 4))


@pytest.mark.parametrize('n,size,expected', [
    (4, 16, [0, 4, 8, 12, 16]),
    (3, 10, [0, 3, 7, 10]),   # 3.33 -> 3, 6.67 -> 7
    (2, 5, [0, 3, 5]),        # 2.5 rounds up
    (4, 6, [0, 2, 3, 5, 6]),  # 1.5 -> 2, 4.5 -> 5
    (1, 7, [0, 7]),
])
def test_chunk_bounds(n, size, expected):
  np.testing.assert_array_equal(tubes.chunk_bounds(n, size), expected)


def test_chunk_bounds_errors():
  with pytest.raises(SizeError, match='size'):
    tubes.chunk_bounds(5, 4)
  with pytest.raises(SizeError, match='n_chunks'):
    tubes.chunk_bounds(0, 4)


def test_expand_chunk_grid_uneven_and_even():
  rng = np.random.default_rng(1)
  grid = rng.standard_normal((2, 3, 4)).astype(np.float32)
  shape = (5, 7, 13)
  full = np.asarray(tubes.expand_chunk_grid(grid, shape))
  assert full.shape == shape
  bt, bh, bw = (tubes.chunk_bounds(g, s) for g, s in zip(grid.shape, shape, strict=True))
  for i in range(2):
    for j in range(3):
      for k in range(4):
        region = full[bt[i]:bt[i + 1], bh[j]:bh[j + 1], bw[k]:bw[k + 1]]
        assert region.size > 0
        np.testing.assert_array_equal(region, grid[i, j, k])
  even = np.asarray(tubes.expand_chunk_grid(grid, (4, 6, 8)))
  ref = grid.repeat(2, 0).repeat(2, 1).repeat(2, 2)
  np.testing.assert_array_equal(even, ref)
  # trailing axes are carried along, and chunk_means inverts the expansion
  rgb = np.stack([grid, -grid], axis=-1)
  full_rgb = tubes.expand_chunk_grid(rgb, shape)
  np.testing.assert_allclose(np.asarray(tubes.chunk_means(full_rgb, (2, 3, 4))),
                             rgb, rtol=1e-6)


def test_expand_chunk_grid_errors():
  with pytest.raises(ShapeError, match='grid'):
    tubes.expand_chunk_grid(np.zeros((2, 2)), (4, 4, 4))
  with pytest.raises(SizeError, match='size'):
    tubes.expand_chunk_grid(np.zeros((2, 2, 8)), (4, 4, 4))
