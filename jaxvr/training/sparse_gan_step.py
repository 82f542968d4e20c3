"""One jitted training step of the sparse-pixel video GAN (both sides).

Nittala et al., "Relevance of Sparse pixel representations to Lossy Video
Compression". Per step: (1) generate with the current generators and update
both critics on the stopped-gradient output; (2) update the generators
against the updated critics. Two optimiser states (generators ``mask`` +
``frame``; critics ``spatial`` + ``temporal``, whose spectral-norm power
iteration state lives in ``batch_stats``).

Step (2) needs the generators' output for the same parameters and noise as
step (1), so instead of running the generators twice the step keeps the
forward pass of (1) as a ``jax.vjp`` and pulls the generator-loss gradient
back through it; the result equals regenerating.

Data parallel: parameters, optimiser state and key replicated, the batch
sharded over the ``data`` axis of a mesh; XLA inserts the gradient
all-reduce. The state is donated. The modules themselves come from
:mod:`jaxvr.sparsegan.models`, shared with inference.
"""

import functools
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from jaxvr import sharding as shard_lib
from jaxvr.errors import ShapeError
from jaxvr.sparsegan import losses
from jaxvr.sparsegan.binarize import random_mask, straight_through_round
from jaxvr.sparsegan.models import HOLE_NOISE_STD, Models, build_models


class CriticState(train_state.TrainState):
  """Critic train state with the spectral-norm estimates (``u``, ``sigma``)."""
  batch_stats: Any = None


@flax.struct.dataclass
class GanState:
  """Everything that changes during training.

  Attributes:
    step: number of completed steps (int32 scalar).
    rng: base key; step ``s`` uses ``fold_in(rng, s)``.
    gen: generator state, params ``{'mask': ..., 'frame': ...}`` (no
      ``mask`` entry for random-mask baselines).
    critic: critic state, params ``{'spatial': ..., 'temporal': ...}``.
  """
  step: jax.Array
  rng: jax.Array
  gen: train_state.TrainState
  critic: CriticState


def _generator_tx(config, labels):
  o = config.optim
  base = optax.exponential_decay(o.gen_lr, o.decay_steps, o.decay_rate,
                                 staircase=True)

  def mask_lr(count):
    scale = jnp.where(count < o.mask_lr_scale_steps, o.mask_lr_scale, 1.0)
    return base(count) * jnp.where(count < o.warmup_steps, 0.0, scale)

  adam = lambda lr: optax.adam(lr, b1=o.b1, b2=o.b2)
  tx = optax.multi_transform({'mask': adam(mask_lr), 'frame': adam(base)},
                             labels)
  if o.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx


def _critic_tx(config):
  o = config.optim
  lr = optax.exponential_decay(o.critic_lr, o.decay_steps, o.decay_rate,
                               staircase=True)
  tx = optax.adam(lr, b1=o.b1, b2=o.b2)
  if o.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx


def init_state(config: ml_collections.ConfigDict, key: jax.Array,
               models: Models | None = None) -> GanState:
  """Fresh training state for frames of ``config.data.frame_size``.

  Parameter shapes do not depend on B or T, so the modules are initialised
  on one single-frame clip.

  Args:
    config: the trainer config (``model``, ``optim``, ``data`` sections).
    key: a ``jax.random.key``.
    models: modules from ``build_models(config)`` (built if None).

  Returns:
    A ``GanState`` at step 0.
  """
  models = models or build_models(config)
  h = w = config.data.frame_size
  k_mask, k_frame, k_critic, k_run, k_in = jax.random.split(key, 5)
  # Random rather than constant dummy inputs: under jit, XLA would otherwise
  # constant-fold the whole forward pass at compile time (very slow on CPU).
  clip = jax.random.uniform(k_in, (1, 1, h, w, 3), jnp.float32)
  mask = clip[..., :1]
  gen_params = {'frame': models.frame.init(k_frame, clip, mask, clip)['params']}
  if models.mask is not None:
    gen_params['mask'] = models.mask.init(k_mask, clip, mask)['params']
  labels = {k: jax.tree.map(lambda _, k=k: k, v) for k, v in gen_params.items()}
  gen = train_state.TrainState.create(
      apply_fn=None, params=gen_params, tx=_generator_tx(config, labels))
  cvars = models.critics.init(k_critic, clip, mask)
  critic = CriticState.create(apply_fn=None, params=cvars['params'],
                              tx=_critic_tx(config),
                              batch_stats=cvars['batch_stats'])
  return GanState(step=jnp.zeros((), jnp.int32), rng=k_run, gen=gen,
                  critic=critic)


def generate(models: Models, config: ml_collections.ConfigDict,
             gen_params: Mapping[str, Any], frames: jax.Array,
             key: jax.Array, step: jax.Array | int = 0) -> dict:
  """Runs mask and inpainting generators on a clip.

  Args:
    models: the modules.
    config: trainer config (``model.density``, ``optim.warmup_steps``).
    gen_params: ``{'mask': ..., 'frame': ...}``.
    frames: ``[B, T, H, W, 3]`` in [0, 1].
    key: randomness for the mask noise ``r``, hole noise ``z`` and random
      masks.
    step: training step (random masks replace learned ones during warm-up).

  Returns:
    Dict with ``raw`` (``u``) and ``decoded`` (known pixels copied in)
    ``[B, T, H, W, 3]``, ``mask`` (binary ``b``) and ``confidence`` (``c``)
    ``[B, T, H, W, 1]``. For random-mask models ``confidence == mask``.
  """
  k_r, k_z, k_m = jax.random.split(key, 3)
  mshape = frames.shape[:-1] + (1,)
  density = float(config.model.density)
  if models.mask is None:
    b = c = random_mask(k_m, mshape, density)
  else:
    r = jax.random.uniform(k_r, mshape, jnp.float32)
    c = models.mask.apply({'params': gen_params['mask']}, frames, r)
    b = straight_through_round(c)
    if config.optim.warmup_steps:
      # Warm-up (robust preset): G_I trains on exact-density random masks.
      # G_M still runs (one traced graph for all steps) but gets no gradient:
      # the selected mask does not depend on it, its density term is off and
      # its learning rate is zero until the warm-up ends.
      b = jnp.where(step < config.optim.warmup_steps,
                    random_mask(k_m, mshape, density), b)
  z = HOLE_NOISE_STD * jax.random.normal(k_z, frames.shape, jnp.float32)
  u, decoded = models.frame.apply({'params': gen_params['frame']},
                                  b * frames, b, z)
  return {'raw': u, 'decoded': decoded, 'mask': b, 'confidence': c}


def _frames_from(batch):
  frames = batch['video'] if isinstance(batch, Mapping) else batch
  if frames.ndim != 5 or frames.shape[-1] != 3:
    raise ShapeError(f'batch video: expected [B, T, H, W, 3], got shape '
                     f'{frames.shape}')
  if jnp.issubdtype(frames.dtype, jnp.integer):
    return frames.astype(jnp.float32) / 255.0
  return frames.astype(jnp.float32)


def _psnr(a, b):
  mse = jnp.mean(jnp.square(a - b), axis=(2, 3, 4))
  return jnp.minimum(10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10)), 100.0)


def train_step(models: Models, config: ml_collections.ConfigDict,
               state: GanState, batch) -> tuple[GanState, dict]:
  """One critic update followed by one generator update (not jitted).

  Args:
    models: the modules.
    config: trainer config.
    state: current ``GanState``.
    batch: clip ``[B, T, H, W, 3]`` (float in [0, 1] or uint8), or a mapping
      holding it under ``'video'``.

  Returns:
    ``(new_state, metrics)``; metrics are scalar device arrays.
  """
  lc = config.loss
  frames = _frames_from(batch)
  key = jax.random.fold_in(state.rng, state.step)
  k_gen, k_gp_s, k_gp_t = jax.random.split(key, 3)

  out, gen_vjp = jax.vjp(
      lambda p: generate(models, config, p, frames, k_gen, state.step),
      state.gen.params)
  u, b = out['raw'], out['mask']

  # (1) Critics: one call on real + fake, so the power iteration advances
  # once per step.
  u_sg, b_sg = jax.lax.stop_gradient(u), jax.lax.stop_gradient(b)
  n = frames.shape[0]

  def critic_loss_fn(params):
    (s, t), upd = models.critics.apply(
        {'params': params, 'batch_stats': state.critic.batch_stats},
        jnp.concatenate([frames, u_sg]), jnp.concatenate([b_sg, b_sg]),
        True, mutable=['batch_stats'])
    loss_s = losses.critic_loss(s[:n], s[n:], lc.critic_loss, lc.drift)
    loss_t = losses.critic_loss(t[:n], t[n:], lc.critic_loss, lc.drift)
    loss = loss_s + lc.lambda_t * loss_t
    gp = jnp.zeros(())
    if lc.gp_weight:
      vs = {'params': params, 'batch_stats': upd['batch_stats']}
      # The spatial critic scores frames, so its penalty is per frame (frames
      # folded into the batch); the temporal one is per clip.
      fold = lambda x: x.reshape((-1, 1) + x.shape[2:])
      gp_s = losses.gradient_penalty(
          lambda x: models.critics.apply(
              vs, x, fold(b_sg), False,
              method=lambda m, x, b, us: m.spatial(x, b, us)),
          fold(frames), fold(u_sg), k_gp_s)
      gp_t = losses.gradient_penalty(
          lambda x: models.critics.apply(
              vs, x, False, method=lambda m, x, us: m.temporal(x, us)),
          frames, u_sg, k_gp_t)
      gp = gp_s + lc.lambda_t * gp_t
      loss = loss + lc.gp_weight * gp
    aux = (upd['batch_stats'], s, t, gp)
    return loss, aux

  # With no adversarial term (lambda_adv = 0, a reconstruction-only
  # recipe) the critics would train for nothing: skip them, at about half
  # the step's cost.
  adversarial = bool(lc.lambda_adv)
  if adversarial:
    (loss_d, (bstats, s, t, gp)), grads_d = jax.value_and_grad(
        critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads_d, batch_stats=bstats)
  else:
    zero = jnp.zeros(())
    loss_d, gp, grads_d, critic = zero, zero, zero, state.critic
    s = t = jnp.zeros((2 * n,))

  # (2) Generators against the updated critics (no power-iteration update).
  dens_on = (state.step >= config.optim.warmup_steps).astype(jnp.float32)
  # Reconstruction-only warm-up: the adversarial term joins at adv_start.
  adv_on = (state.step >= config.optim.get('adv_start', 0)).astype(
      jnp.float32)
  cvars = {'params': critic.params, 'batch_stats': critic.batch_stats}

  def gen_loss_fn(u, b):
    adv = jnp.zeros(())
    if adversarial:
      s_f, t_f = models.critics.apply(cvars, u, jax.lax.stop_gradient(b),
                                      False)
      adv = (losses.generator_adversarial(s_f)
             + lc.lambda_t * losses.generator_adversarial(t_f))
    dens = losses.density_loss(b, config.model.density, lc.density_form)
    rec = losses.reconstruction_loss(u, frames, lc.recon)
    w_adv = lc.lambda_adv * adv_on
    total = w_adv * adv + lc.alpha * dens_on * dens + lc.beta * rec
    if models.mask is None:  # random-mask baseline: no density term
      total = w_adv * adv + lc.beta * rec
    return total, (adv, dens, rec)

  (loss_g, (adv, dens, rec)), (g_u, g_b) = jax.value_and_grad(
      gen_loss_fn, argnums=(0, 1), has_aux=True)(u, b)
  cot = jax.tree.map(jnp.zeros_like, out)
  cot['raw'], cot['mask'] = g_u, g_b
  (grads_g,) = gen_vjp(cot)
  gen = state.gen.apply_gradients(grads=grads_g)

  rho = losses.frame_density(b)
  metrics = {
      'critic_loss': loss_d, 'gen_loss': loss_g, 'adv_loss': adv,
      'density_loss': dens, 'rec_loss': rec, 'gp': gp,
      'density': jnp.mean(rho), 'density_min': jnp.min(rho),
      'density_max': jnp.max(rho),
      'zero_frames': jnp.mean((rho == 0).astype(jnp.float32)),
      'd_s_real': jnp.mean(s[:n]), 'd_s_fake': jnp.mean(s[n:]),
      'd_t_real': jnp.mean(t[:n]), 'd_t_fake': jnp.mean(t[n:]),
      'psnr': jnp.mean(_psnr(out['decoded'], frames)),
      'gen_grad_norm': optax.tree.norm(grads_g),
      'critic_grad_norm': optax.tree.norm(grads_d),
  }
  new_state = state.replace(step=state.step + 1, gen=gen, critic=critic)
  return new_state, metrics


def make_train_step(config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh | None = None,
                    models: Models | None = None, donate: bool = True,
                    compiler_options: dict | None = None):
  """The jitted step ``state, metrics = step(state, batch)``.

  The step index comes from ``state.step`` (per-step key
  ``fold_in(state.rng, state.step)``), so a resumed run draws the same noise.

  Args:
    config: trainer config.
    mesh: data-parallel mesh (``jaxvr.sharding.make_mesh``); None =
      no sharding annotations.
      With a mesh, B must be divisible by the mesh size.
    models: modules (built from the config if None).
    donate: donate the input state's buffers.
    compiler_options: XLA compiler options (e.g. ``fast_compile_options()``
      for short CPU runs).

  Returns:
    The jitted step function.
  """
  models = models or build_models(config)
  fn = functools.partial(train_step, models, config)
  kw = {'donate_argnums': (0,) if donate else (),
        'compiler_options': compiler_options}
  if mesh is not None:
    rep = shard_lib.replicated(mesh)
    kw.update(in_shardings=(rep, shard_lib.batch_sharding(mesh)),
              out_shardings=(rep, rep))
  return jax.jit(fn, **kw)


def fast_compile_options() -> dict | None:
  """XLA options that cut CPU compile time of run-once functions.

  Threefry random-number code takes about a second per parameter tensor to
  compile with full CPU backend optimisation; level 0 is ~8x faster to
  compile. Meant for initialisation, whose run time is negligible. None off
  CPU.
  """
  if jax.default_backend() != 'cpu':
    return None
  return {'xla_backend_optimization_level': 0}


def make_init(config: ml_collections.ConfigDict,
              mesh: jax.sharding.Mesh | None = None,
              models: Models | None = None):
  """Jitted ``init(key) -> GanState``, replicated over ``mesh`` if given."""
  models = models or build_models(config)
  fn = functools.partial(init_state, config, models=models)
  kw = {'compiler_options': fast_compile_options()}
  if mesh is not None:
    kw['out_shardings'] = shard_lib.replicated(mesh)
  return jax.jit(fn, **kw)
