"""ConvGRU cell: equations, memory, causality, scan equals a Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr.errors import ShapeError
from jaxvr.sparsegan import ConvGRUCell, conv_gru
from jaxvr.training.sparse_gan_step import fast_compile_options

F = 4
SHAPE = (2, 5, 6, 6, 3)   # [B, T, h, w, C]


@pytest.fixture(scope='module')
def gru():
  rnn = conv_gru(F, name='gru')
  x = jax.random.normal(jax.random.key(0), SHAPE)
  params = jax.jit(rnn.init, compiler_options=fast_compile_options())(
      jax.random.key(1), x)
  return rnn, params, jax.jit(rnn.apply)


def _conv(x, kernel, bias=None):
  y = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision='highest')
  return y if bias is None else y + bias


def test_cell_matches_gru_equations(gru):
  _, params, _ = gru
  p = params['params']['cell']
  cell = ConvGRUCell(F)
  x = jax.random.normal(jax.random.key(2), SHAPE[:1] + SHAPE[2:])
  h = jax.random.normal(jax.random.key(3), SHAPE[:1] + SHAPE[2:4] + (F,))
  h_new, y = cell.apply({'params': p}, h, x)
  gates = jax.nn.sigmoid(
      _conv(x, p['gates_x']['kernel'], p['gates_x']['bias'])
      + _conv(h, p['gates_h']['kernel']))
  z, r = gates[..., :F], gates[..., F:]
  n = jnp.tanh(_conv(x, p['cand_x']['kernel'], p['cand_x']['bias'])
               + _conv(r * h, p['cand_h']['kernel']))
  expected = (1 - z) * h + z * n
  np.testing.assert_allclose(np.asarray(h_new), np.asarray(expected),
                             atol=1e-5)
  np.testing.assert_array_equal(np.asarray(h_new), np.asarray(y))


def test_scan_equals_python_loop(gru):
  rnn, params, apply = gru
  x = jax.random.normal(jax.random.key(4), SHAPE)
  scanned = apply(params, x)
  assert scanned.shape == SHAPE[:-1] + (F,)
  cell = ConvGRUCell(F)
  step = jax.jit(lambda h, xt: cell.apply({'params': params['params']['cell']},
                                          h, xt))
  h = cell.initialize_carry(None, x[:, 0].shape)
  assert float(jnp.abs(h).max()) == 0.0   # zero initial state
  outs = []
  for t in range(SHAPE[1]):
    h, y = step(h, x[:, t])
    outs.append(y)
  np.testing.assert_allclose(np.asarray(scanned), np.asarray(
      jnp.stack(outs, axis=1)), atol=1e-6)


def test_memory_and_causality(gru):
  _, params, apply = gru
  x = jax.random.normal(jax.random.key(5), SHAPE)
  base = np.asarray(apply(params, x))
  t = 2
  # Memory: changing frame t-1 changes the output at t (and later).
  x_prev = x.at[:, t - 1].add(1.0)
  out_prev = np.asarray(apply(params, x_prev))
  np.testing.assert_array_equal(out_prev[:, :t - 1], base[:, :t - 1])
  for s in range(t, SHAPE[1]):
    assert np.abs(out_prev[:, s] - base[:, s]).max() > 1e-4, s
  # Causality: changing frame t+1 leaves every output up to t unchanged.
  x_next = x.at[:, t + 1].add(1.0)
  out_next = np.asarray(apply(params, x_next))
  np.testing.assert_array_equal(out_next[:, :t + 1], base[:, :t + 1])
  assert np.abs(out_next[:, t + 1] - base[:, t + 1]).max() > 1e-4


def test_cell_rejects_mismatched_carry():
  cell = ConvGRUCell(F)
  with pytest.raises(ShapeError, match='carry'):
    cell.init(jax.random.key(0), jnp.zeros((1, 4, 4, F + 1)),
              jnp.zeros((1, 4, 4, 3)))
