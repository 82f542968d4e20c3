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
  _, loop = bench_carv.time_loop(params, config, video, key, n, repeats=1)
  keep = bench_carv.stmae.len_keep(config.num_tokens, bench_carv.RATIO)
  plain = bench_carv._zero_sums(config)
  tokens = bench_carv.stmae.encode_tokens(params, config, video[None])
  for b in range(n // 2):
    plain = bench_carv._add_plain_batch(
        plain, params, tokens, key, np.int32(b), config=config, batch=2,
        keep=keep)
  plain = dict(zip(bench_carv.SUM_NAMES, plain, strict=True))
  for got in (loop, plain):
    for name in bench_carv.SUM_NAMES:
      np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]),
                                 rtol=1e-5, atol=1e-6, err_msg=name)
