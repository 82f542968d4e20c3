"""The PyTorch competitors of the benchmarks agree with jaxvr and the fixtures."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip('torch')

import jaxvr.stmae as stmae  # noqa: E402
from eval import torch_stmae  # noqa: E402
from jaxvr.errors import ConfigError  # noqa: E402


def test_torch_stmae_matches_official_parity_fixture(fixtures_dir):
  errors = torch_stmae.parity_errors(fixtures_dir)
  assert errors['ids'] == 0 and errors['mask'] == 0
  assert max(errors.values()) < 1e-4, errors


def _random_state_dict(config, seed):
  """Every parameter of the torch model random (so every term matters)."""
  gen = torch.Generator().manual_seed(seed)
  model = torch_stmae.TorchSTMAE(config)
  return {k: (0.3 * torch.randn(v.shape, generator=gen)
              + (1.0 if k.endswith('norm1.weight') else 0.0)).numpy()
          for k, v in model.state_dict().items()}


@pytest.mark.parametrize('variant', [
    dict(norm_pix_loss=True, pred_t_dim=4),        # u = 1, linspace frames
    dict(sep_pos_embed=False, cls_embed=False),  # joint tables, no cls
])
def test_torch_stmae_forward_matches_jaxvr(parity_model, variant):
  config = dataclasses.replace(parity_model[1], **variant)
  sd = _random_state_dict(config, seed=len(variant))
  params = stmae.convert_state_dict(sd, config)
  rng = np.random.default_rng(0)
  video = rng.standard_normal((2,) + config.video_shape).astype(np.float32)
  noise = rng.random((2, config.num_tokens)).astype(np.float32)
  want = stmae.forward(params, config, video, noise=noise, mask_ratio=0.75)
  model = torch_stmae.TorchSTMAE(config).load_arrays(
      stmae.export_state_dict(params, config))
  with torch.inference_mode():
    got = model(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()),
                torch.from_numpy(noise), 0.75)
  np.testing.assert_array_equal(got['ids_keep'].numpy(), want.ids_keep)
  np.testing.assert_array_equal(got['mask'].numpy(), want.mask)
  for name in ('pred', 'latent', 'per_token_loss', 'sample_loss', 'loss'):
    np.testing.assert_allclose(got[name].numpy(), getattr(want, name),
                               rtol=1e-4, atol=1e-4, err_msg=name)
  # the bench's significance sums from the same masks
  sums = torch_stmae.batch_sums(got)
  np.testing.assert_allclose(sums[0].numpy(), np.sum(
      np.asarray(want.sample_loss)[:, None] * (1 - np.asarray(want.mask)), 0),
                             rtol=1e-4)
  np.testing.assert_array_equal(sums[3].numpy(), np.sum(want.mask, 0))


def test_torch_stmae_refuses_pyslowfast_config(parity_model):
  with pytest.raises(ConfigError, match='mae_st'):
    torch_stmae.TorchSTMAE(stmae.pyslowfast_config(parity_model[1]))


@pytest.mark.parametrize('kernel, stride', [(6, 1), (5, 1), (6, 2), (5, 2)])
def test_torch_lca_port_matches_jaxvr_lca(kernel, stride):
  import jax.numpy as jnp

  import jaxvr.lca as lca
  from eval.torch_lca import TorchLca

  rng = np.random.default_rng(kernel + stride)
  image = rng.standard_normal((21, 19))
  kernels = rng.standard_normal((3, kernel, kernel))
  kernels /= np.linalg.norm(kernels, axis=(1, 2), keepdims=True)
  port = TorchLca(image, kernels, lam=0.3, tau=4.0, stride=stride)
  for _ in range(25):
    port.step()
  want = np.asarray(lca.infer(
      jnp.asarray(image[None], jnp.float32),
      jnp.asarray(kernels[:, None], jnp.float32), stride=stride, lam=0.3,
      n_steps=25, dt_over_tau=0.25))
  assert np.count_nonzero(want) > 0.05 * want.size  # the threshold bites
  assert np.count_nonzero(want == 0) > 0.05 * want.size
  np.testing.assert_allclose(port.codes(), want, atol=2e-5 * np.abs(want).max())
