"""The CARV benchmark's contenders compute the same sums as the product path."""

import jax
import numpy as np

from eval import bench_carv
from jaxvr import carv


def test_loop_and_plain_forward_give_the_product_sums(parity_model,
                                                      parity_arrays):
  params, config = parity_model
  video = parity_arrays['input'][0].transpose(1, 2, 3, 0)
  key, n = jax.random.key(3), 6
  want = carv.significance_sums(params, config, video, key, n_samples=n,
                                mask_ratio=bench_carv.RATIO, batch_size=2,
                                progress=False)
  loop = bench_carv.loop(params, config, video, key, n).run(n)
  plain = bench_carv.plain(params, config, video, key, n, batch=2).run(n)
  for got in (loop, plain):
    for name in bench_carv.SUM_NAMES:
      np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]),
                                 rtol=1e-5, atol=1e-6, err_msg=name)


def test_measure_interleaves_rounds_and_keeps_each_best():
  calls = []

  def contender(name, n_per_call):
    def run(n):
      calls.append((name, n))
      return name
    return bench_carv.Contender(run, n_per_call, warm=1)

  timed = bench_carv.measure({'a': contender('a', 4), 'b': contender('b', 2)},
                             repeats=3)
  # warm-ups first, then rounds a, b, a, b, a, b
  assert calls == [('a', 1), ('b', 1)] + [('a', 4), ('b', 2)] * 3
  assert timed['a'][1] == 'a' and timed['b'][1] == 'b'
  assert 0 <= timed['a'][0] < float('inf')
