"""Tests of the strided spatiotemporal dictionary operators (jaxvr.lca.operators)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.lca import operators as ops


def np_synthesis(codes, kernels, stride, image_hw):
  """Explicit loop: adds ``codes[k,i,j] * kernels[k]`` at ``(i*s, j*s)``."""
  codes = np.asarray(codes, np.float64)
  kernels = np.asarray(kernels, np.float64)
  _, hc, wc = codes.shape
  _, t, kh, kw = kernels.shape
  out = np.zeros((t,) + tuple(image_hw))
  for i in range(hc):
    for j in range(wc):
      out[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += (
          np.tensordot(codes[:, i, j], kernels, axes=1))
  return out


@pytest.fixture(scope='session')
def ref_a(fixtures_dir):
  return dict(np.load(fixtures_dir / 'lca_ref_a.npz'))


# K = 5 kernels over T = 3 frames, 4x5 spatial, on a 13x17 image: K != T and,
# for strides 2 and 3, uncovered bottom/right remainders.
SHAPE_X = (3, 13, 17)
SHAPE_W = (5, 3, 4, 5)


@pytest.mark.parametrize('method', ['conv', 'fft'])
@pytest.mark.parametrize('stride', [1, 2, 3])
def test_adjoint_identity_and_explicit_sum(stride, method):
  with jax.enable_x64(True):
    rng = np.random.default_rng(stride)
    w = rng.standard_normal(SHAPE_W)
    r = rng.standard_normal((2,) + SHAPE_X)
    cshape = ops.code_shape(SHAPE_X, SHAPE_W, stride)
    a = rng.standard_normal((2,) + cshape)
    def apply(w, a, r):
      synth, adjoint = ops.make_operator(w, stride, SHAPE_X[1:], method)
      return synth(a), adjoint(r)

    phi_a, phit_r = map(np.asarray, jax.jit(apply)(w, a, r))
    assert phi_a.shape == (2,) + SHAPE_X and phit_r.shape == (2,) + cshape
    lhs = float(np.vdot(phi_a, r))
    rhs = float(np.vdot(a, phit_r))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    ref = np_synthesis(a[1], w, stride, SHAPE_X[1:])
    np.testing.assert_allclose(phi_a[1], ref, atol=1e-12)
    # Exact transpose of the analysis map (jax.linear_transpose).
    lt = jax.jit(lambda a: jax.linear_transpose(
        lambda v: ops.analysis(v, w, stride), r[0])(a)[0])(a[0])
    np.testing.assert_allclose(phi_a[0], np.asarray(lt), atol=1e-12)
    rem = SHAPE_X[1] - ((cshape[1] - 1) * stride + SHAPE_W[2])
    if rem:  # uncovered rows are never synthesised
      assert np.abs(phi_a[..., -rem:, :]).max() <= 1e-12


def test_fixture_drive_and_recon(ref_a):
  with jax.enable_x64(True):
    x, w, s = ref_a['x'], ref_a['kernels'], int(ref_a['stride'])
    assert ops.code_shape(x.shape, w.shape, s) == (16, 10, 10)
    np.testing.assert_allclose(ops.analysis(jnp.asarray(x), w, s),
                               ref_a['drive'], atol=1e-12)
    np.testing.assert_allclose(
        ops.analysis(jnp.asarray(x * ref_a['mask']), w, s),
        ref_a['drive_masked'], atol=1e-12)
    for key in ('lam1', 'lam2_nonneg'):
      recon = ops.synthesis(jnp.asarray(ref_a['codes_' + key]), w, s, (24, 24))
      np.testing.assert_allclose(recon, ref_a['recon_' + key], atol=1e-12)


@pytest.mark.parametrize('masked', [False, True])
def test_power_iteration_matches_fixture_lipschitz(ref_a, masked):
  w = jnp.asarray(ref_a['kernels'], jnp.float32)
  mask = ref_a['mask'] if masked else None
  want = float(ref_a['lipschitz_L_masked' if masked else 'lipschitz_L'])
  got = float(ops.lipschitz(w, (3, 24, 24), 2, mask=mask, n_iter=200))
  assert got <= want * (1 + 1e-5)
  assert got == pytest.approx(want, rel=2e-4)


def test_centred_padding():
  assert ops.centred_padding(18, 2) == 8
  assert ops.centred_padding(4, 4) == 0
  with pytest.raises(ConfigError, match='patch'):
    ops.centred_padding(7, 2)


def test_bad_inputs_raise_typed_errors():
  with pytest.raises(ShapeError, match='kernels'):
    ops.code_shape((2, 8, 8), (4, 3, 3, 3), 1)  # frame counts differ
  with pytest.raises(ShapeError, match='kernels'):
    ops.code_shape((3, 4, 8), (4, 3, 5, 3), 1)  # kernel taller than image
  with pytest.raises(ConfigError, match='stride'):
    ops.code_shape((3, 8, 8), (4, 3, 3, 3), 0)
  with pytest.raises(ConfigError, match='stride'):
    ops.check_stride(1.5)
  with pytest.raises(ShapeError, match='kernels'):
    ops.check_kernels(np.zeros((4, 3, 3)))
  with pytest.raises(ShapeError, match='kernels'):
    ops.check_kernels(np.zeros((4, 3, 3, 3), np.int32))
  with pytest.raises(ConfigError, match='method'):
    ops.resolve_method('direct', (4, 3, 3, 3))
  assert ops.resolve_method('auto', (4, 3, 3, 3)) == 'conv'
  assert ops.resolve_method('auto', (4, 3, 8, 8)) == 'fft'
