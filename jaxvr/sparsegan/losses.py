"""Losses of the sparse-pixel video GAN and the two training presets.

Nittala et al., "Relevance of Sparse pixel representations to Lossy Video
Compression", on top of Peter (arXiv:2202.05623) and the Wasserstein GAN
(Arjovsky et al., arXiv:1701.07875) with spectral normalisation (Miyato et
al., arXiv:1802.05957). Optional extras for the ``robust`` preset: the drift
term of Karras et al. (arXiv:1710.10196), the gradient penalty of Gulrajani
et al. (arXiv:1704.00028) and the hinge loss used by the official SNGAN.

Score convention: critics score real clips high. With ``n = B * T`` frames
and ``N = H * W`` pixels per frame:

* critic: ``mean D_S(u, b) - mean D_S(f, b) + lambda_T (mean D_T(u) -
  mean D_T(f))`` (Wasserstein) or the hinge form, plus optional drift / GP;
* generator: ``lambda_adv L_adv + alpha L_dens + beta L_rec`` with
  ``L_adv = -mean D_S(u, sg(b)) - lambda_T mean D_T(u)``,
  ``L_dens = mean_frames |rho - d|`` (rho = kept fraction per frame) and
  ``L_rec`` the MSE (or MAE) of the raw output over all pixels.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxvr.errors import ConfigError

# Settings of the spec's two presets. ``paper`` is the faithful one: spectral
# norm with the plain Wasserstein loss, a non-squared per-frame density
# penalty and no warm-up. ``robust`` adds drift and a gradient penalty, a
# warm-up of the inpainting generator on exact-density random masks (mask
# generator frozen), a 10x lower mask-generator learning rate for the first
# 10k steps, orthogonal recurrent init and gradient clipping.
PRESETS = {
    'paper': dict(
        critic_loss='wasserstein', drift=0.0, gp_weight=0.0,
        lambda_t=1.0, lambda_adv=1.0, alpha=100.0, beta=1000.0,
        density_form='abs', recon='mse', warmup_steps=0,
        mask_lr_scale=1.0, mask_lr_scale_steps=0,
        orthogonal_recurrent=False, grad_clip=0.0),
    'robust': dict(
        critic_loss='wasserstein', drift=1e-3, gp_weight=10.0,
        lambda_t=1.0, lambda_adv=1.0, alpha=100.0, beta=1000.0,
        density_form='abs', recon='mse', warmup_steps=5_000,
        mask_lr_scale=0.1, mask_lr_scale_steps=10_000,
        orthogonal_recurrent=True, grad_clip=1.0),
}


def preset(name: str) -> dict:
  """A copy of the settings of preset ``name`` ('paper' or 'robust')."""
  if name not in PRESETS:
    raise ConfigError(f'preset: unknown preset {name!r}, expected one of '
                      f'{sorted(PRESETS)}')
  return dict(PRESETS[name])


def frame_density(mask: jax.Array) -> jax.Array:
  """Kept fraction per frame, ``rho[b, t] = mean_{h,w} mask``.

  Args:
    mask: ``[B, T, H, W, 1]``.

  Returns:
    ``[B, T]``.
  """
  return jnp.mean(mask.astype(jnp.float32), axis=(2, 3, 4))


def density_loss(mask: jax.Array, target: float,
                 form: str = 'abs') -> jax.Array:
  """Density penalty, mean over frames of ``|rho - d|`` (or ``(rho - d)^2``).

  The absolute value is the literal reading of the paper's
  ``||sum M / N - D||_2`` for a scalar, and an exact penalty: above a
  threshold weight the optimum sits at ``d`` exactly, where the squared form
  always leaves a bias.

  Args:
    mask: binary mask (with straight-through gradient), ``[B, T, H, W, 1]``.
    target: target density ``d``.
    form: 'abs' or 'sq'.

  Returns:
    Scalar loss.
  """
  err = frame_density(mask) - target
  if form == 'abs':
    return jnp.mean(jnp.abs(err))
  if form == 'sq':
    return jnp.mean(jnp.square(err))
  raise ConfigError(f"density_loss: form must be 'abs' or 'sq', got {form!r}")


def reconstruction_loss(output: jax.Array, target: jax.Array,
                        kind: str = 'mse') -> jax.Array:
  """Mean squared (or absolute) error over all pixels and channels."""
  diff = output.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == 'mse':
    return jnp.mean(jnp.square(diff))
  if kind == 'mae':
    return jnp.mean(jnp.abs(diff))
  raise ConfigError(
      f"reconstruction_loss: kind must be 'mse' or 'mae', got {kind!r}")


def critic_loss(real: jax.Array, fake: jax.Array,
                kind: str = 'wasserstein', drift: float = 0.0) -> jax.Array:
  """Loss of one critic from its scores on real and fake samples.

  Args:
    real: scores of real samples, any shape.
    fake: scores of generated samples, any shape.
    kind: 'wasserstein' (``mean fake - mean real``) or 'hinge'
      (``mean relu(1 - real) + mean relu(1 + fake)``).
    drift: weight of ``mean real^2``, which keeps scores near zero.

  Returns:
    Scalar loss to minimise.
  """
  if kind == 'wasserstein':
    loss = jnp.mean(fake) - jnp.mean(real)
  elif kind == 'hinge':
    loss = jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
  else:
    raise ConfigError(f"critic_loss: kind must be 'wasserstein' or 'hinge', "
                      f'got {kind!r}')
  if drift:
    loss = loss + drift * jnp.mean(jnp.square(real))
  return loss


def generator_adversarial(fake: jax.Array) -> jax.Array:
  """``-mean D(u)``: the generator side of both Wasserstein and hinge."""
  return -jnp.mean(fake)


def gradient_penalty(score_fn: Callable[[jax.Array], jax.Array],
                     real: jax.Array, fake: jax.Array,
                     key: jax.Array) -> jax.Array:
  """Two-sided gradient penalty ``mean (||grad D(x_hat)|| - 1)^2``.

  ``x_hat`` interpolates real and fake with one uniform weight per clip.

  Args:
    score_fn: maps clips ``[B, ...]`` to scores whose leading axis is B (per
      clip ``[B]`` or per frame ``[B, T]``); the gradient norm is taken per
      clip.
    real: ``[B, ...]``.
    fake: ``[B, ...]``, same shape.
    key: randomness for the interpolation weights.

  Returns:
    Scalar penalty.
  """
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
  x_hat = eps * real + (1.0 - eps) * fake
  grads = jax.grad(lambda x: jnp.sum(score_fn(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(
      range(1, grads.ndim))) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))
