"""Multi-process runs on JAX's distributed runtime, as N local processes.

Each child is started exactly as a user starts one process of a multi-host
run (``JAXVR_DISTRIBUTED=1`` plus the coordinator, process count and id
variables), on CPU with its own virtual device count. The reference runs
happen in this process (8 devices from conftest) while the children work.
"""

import importlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxvr import cli
from jaxvr.errors import ConfigError
from jaxvr.training import checkpoint, loop, sharding

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_SEC = 400
RTOL = 1e-4


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _child_env(n: int, devices: int, index: int, port: int) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('JAX_', 'XLA_', 'JAXVR_'))}
  env.update(JAX_PLATFORMS='cpu', JAXVR_DISTRIBUTED='1',
             JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
             JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(index),
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return env


class Processes:
  """``n`` local processes of one distributed run, each with ``devices``.

  Output goes to ``<log_dir>/process<i>.log``. Use as a context manager:
  leaving the block (normally or by an exception) kills whatever is still
  running, so a failed test leaves no process behind.
  """

  def __init__(self, argv: list[str], n: int, devices: int,
               log_dir: pathlib.Path):
    port = _free_port()
    self.logs = [log_dir / f'process{i}.log' for i in range(n)]
    self.procs = []
    for i, log in enumerate(self.logs):
      with open(log, 'wb') as out:
        self.procs.append(subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT, env=_child_env(n, devices, i, port)))

  def wait(self, timeout: float = CHILD_TIMEOUT_SEC) -> list[str]:
    """Waits for every process; fails unless all exit 0. Returns the logs."""
    deadline = time.monotonic() + timeout
    for proc, log in zip(self.procs, self.logs, strict=True):
      try:
        code = proc.wait(max(deadline - time.monotonic(), 1))
      except subprocess.TimeoutExpired:
        pytest.fail(f'{log.name} still running after {timeout} s')
      assert code == 0, f'{log.name} exit {code}:\n{log.read_text()[-3000:]}'
    return [log.read_text() for log in self.logs]

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for proc in self.procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()


def _lines(path: pathlib.Path) -> list[str]:
  return path.read_text().splitlines()


def _curve(workdir) -> list[tuple[int, dict]]:
  return [(r['step'], r['metrics']) for r in loop.read_metrics(workdir)]


def _assert_same_curves(got, want, atol: float = 1e-7):
  assert [s for s, _ in got] == [s for s, _ in want]
  for (step, a), (_, b) in zip(got, want, strict=True):
    assert a.keys() == b.keys()
    for name in a:
      np.testing.assert_allclose(a[name], b[name], rtol=RTOL, atol=atol,
                                 err_msg=f'{name} at step {step}')


def _assert_close_in_norm(got, want, rtol: float):
  """Checks ``|got - want| <= rtol |want|`` over all leaves as one vector."""
  got, want = ravel_pytree(got)[0], ravel_pytree(want)[0]
  assert jnp.linalg.norm(got - want) <= rtol * jnp.linalg.norm(want)


def _train_both_ways(tmp_path, name: str, option: str, overrides: dict,
                     atol: float = 1e-7, steps: int | None = None,
                     export: pathlib.Path | None = None):
  """Trains ``name`` as 2 processes x 4 devices and as 1 x 8, from one config.

  The 2-process run is the command line a user starts on every host; the
  reference runs in this process meanwhile. Checks that both log the same
  metrics (relative difference <= 1e-4) for the first ``steps`` steps (all
  if None).

  Returns:
    ``(trainer module, config, 2-process workdir, reference result)``.
  """
  trainer = importlib.import_module(f'jaxvr.training.{name}')
  config = importlib.import_module(f'jaxvr.configs.{name}').get_config(option)
  config.update_from_flattened_dict(overrides)
  multi, single = tmp_path / 'multi', tmp_path / 'single'
  argv = ['-m', f'train.{name}', f'--config=jaxvr/configs/{name}.py:{option}',
          f'--workdir={multi}',
          *[f'--config.{k}={v}' for k, v in overrides.items()],
          *([f'--export={export}'] if export else [])]
  with Processes(argv, n=2, devices=4, log_dir=tmp_path) as procs:
    reference = trainer.run(config, single)
    logs = procs.wait()
  assert all(f'finished at step {reference.step}:' in log for log in logs)
  # Process 0 logs one record per step, as a single-process run does.
  assert [s for s, _ in _curve(multi)] == [s for s, _ in _curve(single)]
  _assert_same_curves(_curve(multi)[:steps], _curve(single)[:steps], atol)
  return trainer, config, multi, reference


def _continue_in_one_process(trainer, config, multi, atol: float = 1e-7):
  """One process resumes the 2-process run from its next-to-last save.

  The last save is removed first (as if the run had died after the one
  before); from the same restored state, the resumed steps must log what
  the 2 processes logged.
  """
  curve = _curve(multi)
  with checkpoint.Checkpointer(multi / loop.CKPT_DIR) as ckpt:
    *_, resume_from, last = ckpt.all_steps()
  shutil.rmtree(multi / loop.CKPT_DIR / str(last))
  resumed = trainer.run(config, multi)
  assert resumed.step == last > resume_from
  _assert_same_curves(_curve(multi), curve, atol)


def test_stmae_two_processes_match_one_and_hand_over_checkpoints(tmp_path):
  # The smoke config: 6 steps, one record per step, saves at 3 and 6.
  export = tmp_path / 'export'
  trainer, config, multi, reference = _train_both_ways(
      tmp_path, 'stmae', 'smoke', {}, export=export)

  # Both processes took part in the export; it loads in one process.
  exported, _ = checkpoint.load_params(export)
  assert not list(tmp_path.glob('.export*'))

  # The checkpoint written by 2 processes restores into 1 process.
  model_cfg = trainer.model_config(config)
  target = sharding.abstract_with_sharding(
      trainer.abstract_state(model_cfg, trainer.make_optimizer(config)),
      sharding.replicated(sharding.make_mesh()))
  with checkpoint.Checkpointer(multi / loop.CKPT_DIR) as ckpt:
    assert ckpt.all_steps() == [3, 6]
    restored = ckpt.restore(target, step=6)
  assert int(restored.state.step) == 6
  assert restored.data_state['position'] == 6
  restored = jax.device_get(restored.state.params)
  # The export is the 2-process run's final state, bit for bit.
  jax.tree.map(np.testing.assert_array_equal, exported, restored)
  # Adam turns rounding-level differences of gradients that are zero in
  # exact arithmetic (an attention key bias moves no softmax) into steps of
  # up to the learning rate (3e-3 at the peak), of either sign: such leaves
  # differ elementwise between 2x4 and 1x8 devices, so the two runs are
  # compared on the whole parameter vector.
  _assert_close_in_norm(restored, jax.device_get(reference.state.params),
                        rtol=1e-3)

  _continue_in_one_process(trainer, config, multi)


# Two steps, saves at 1 and 2. Each GAN step updates the critics (Adam),
# then measures them on the fakes: Adam's first steps turn rounding-level
# differences of near-zero gradients into differences of a few 1e-6 in the
# near-zero critic outputs (adv_loss ~3e-3), hence an absolute tolerance,
# and into 5e-4 relative differences at step 2 (critic_grad_norm): the same
# spread as between 4 and 8 devices in one process. So the GAN is compared
# with the 1 x 8 reference on its first step, and the hand-over on the
# second, from one restored state.
GAN_OVERRIDES = {'data.source': 'synthetic', 'total_steps': 2,
                 'log_every': 1, 'eval_every': 0, 'ckpt.every': 1,
                 'fast_compile': True}


def test_gan_smoke_step_as_two_processes(tmp_path):
  trainer, config, multi, _ = _train_both_ways(
      tmp_path, 'sparse_gan', 'smoke', GAN_OVERRIDES, 1e-5, 1)
  _continue_in_one_process(trainer, config, multi, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('name, option, overrides, atol, steps', [
    ('lca_dictionary', 'smoke', {}, 1e-7, None),
    ('autoencoder', 'smoke', {}, 1e-7, None),
])
def test_every_trainer_runs_as_two_processes(tmp_path, name, option,
                                             overrides, atol, steps):
  trainer, config, multi, _ = _train_both_ways(
      tmp_path, name, option, overrides, atol, steps)
  _continue_in_one_process(trainer, config, multi, atol)


def test_compare_as_two_processes_equals_one_run(small_clips, tmp_path,
                                                  without_timings):
  def args(out):
    return ['compare', *small_clips, '--out', str(out), '--reducers',
            'interp-copy,interp-linear', '--frames', '4', '--size', '16',
            '--no-vmaf']

  multi = tmp_path / 'multi'
  with Processes(['-m', 'jaxvr.cli', *args(multi)], n=2, devices=1,
                 log_dir=tmp_path) as procs:
    assert cli.main(args(tmp_path / 'single')) == 0
    logs = procs.wait()
  assert 'wrote' in logs[0] and 'shard rows written' in logs[1]
  # Clips 0 and 2 ran in process 0, clip 1 in process 1.
  assert [len(_lines(multi / f'results.shard-{i}-of-2.jsonl'))
          for i in (0, 1)] == [4, 2]
  merged, single = (json.loads((d / 'results.json').read_text())
                    for d in (multi, tmp_path / 'single'))
  assert len(merged) == 6
  assert without_timings(merged) == without_timings(single)
  assert (multi / 'report.html').is_file()


@pytest.mark.slow
def test_carv_significance_over_two_processes_equals_one(tmp_path):
  from jaxvr.assets import sample_clip_path
  from jaxvr.carv import pipeline

  multi = tmp_path / 'multi'
  argv = ['-m', 'jaxvr.cli', 'carv', '--out', str(multi), '--samples', '16',
          '--frames', '16']
  with Processes(argv, n=2, devices=4, log_dir=tmp_path) as procs:
    single = pipeline.run_carv(sample_clip_path(), tmp_path / 'single',
                               n_samples=16, max_frames=16, progress=False)
    logs = procs.wait()
  assert 'significance.npy' in logs[0] and 'significance.npy' not in logs[1]
  for name in ('significance', 'full_map'):
    # Equal up to float32 summation order over 8 devices.
    np.testing.assert_allclose(np.load(multi / single[name].name),
                               np.load(single[name]), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_sigterm_on_one_process_stops_every_process_at_one_step(tmp_path):
  workdir = tmp_path / 'run'
  argv = ['-m', 'train.stmae', '--config=jaxvr/configs/stmae.py:smoke',
          f'--workdir={workdir}', '--config.total_steps=100000',
          '--config.ckpt_every=100000']
  with Processes(argv, n=2, devices=1, log_dir=tmp_path) as procs:
    metrics = workdir / loop.METRICS_FILE
    deadline = time.monotonic() + CHILD_TIMEOUT_SEC
    while not metrics.exists() or metrics.read_text().count('\n') < 2:
      assert time.monotonic() < deadline, 'no training step within the limit'
      assert all(p.poll() is None for p in procs.procs), 'a process ended'
      time.sleep(0.5)
    procs.procs[1].send_signal(signal.SIGTERM)
    logs = procs.wait()
  stops = [re.findall(r'preempted at step (\d+):', log) for log in logs]
  assert stops[0] and stops[0] == stops[1], stops
  step = int(stops[0][0])
  with checkpoint.Checkpointer(workdir / 'ckpt') as ckpt:
    assert ckpt.all_steps() == [step]
  assert [r['step'] for r in loop.read_metrics(workdir)] == list(
      range(1, step + 1))


def test_distributed_settings_from_the_environment(monkeypatch, capsys):
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES',
               'JAX_PROCESS_ID'):
    monkeypatch.delenv(name, raising=False)
  assert sharding.distributed_params() == {}
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '10.0.0.1:1234')
  monkeypatch.setenv('JAX_NUM_PROCESSES', '4')
  monkeypatch.setenv('JAX_PROCESS_ID', '3')
  assert sharding.distributed_params() == {
      'coordinator_address': '10.0.0.1:1234', 'num_processes': 4,
      'process_id': 3}
  # Arguments win over the variables.
  assert sharding.distributed_params(process_id=1)['process_id'] == 1
  monkeypatch.setenv('JAX_PROCESS_ID', '4')
  with pytest.raises(ConfigError, match=r'JAX_PROCESS_ID.*\[0, 3\]'):
    sharding.distributed_params()
  monkeypatch.setenv('JAX_PROCESS_ID', 'one')
  with pytest.raises(ConfigError, match='JAX_PROCESS_ID: expected an integer'):
    sharding.distributed_params()
  monkeypatch.setenv('JAX_PROCESS_ID', '0')
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', 'localhost')
  with pytest.raises(ConfigError, match='HOST:PORT'):
    sharding.distributed_params()
  # The command reports it on one line, before JAX starts.
  monkeypatch.setenv('JAXVR_DISTRIBUTED', '1')
  assert cli.main(['reducers']) == 2
  assert 'JAX_COORDINATOR_ADDRESS: expected HOST:PORT' in (
      capsys.readouterr().err)
