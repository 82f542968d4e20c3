"""The ``jaxvr`` command.

Every subcommand is a thin layer over the library: it parses arguments,
calls one library function and prints or writes the result.

Bad input is one line on stderr with exit status 2, never a traceback: an
impossible argument (argparse errors are kept to one line), a jaxvr error
(missing or unreadable video, corrupted payload, bad config), or an output
that cannot be written, which is checked before any work starts. Outputs
are written atomically, so a failure leaves no file behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jaxvr import errors

DEFAULT_SAMPLES = 500


class _Parser(argparse.ArgumentParser):
  """An argument parser whose errors are one line on stderr, exit status 2
  (argparse prints the whole usage first)."""

  def error(self, message):
    self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def _number(kind, low=None, high=None, low_open=False, what='a number'):
  """An argparse ``type`` accepting ``kind`` values in [low, high]
  ((low, high] with ``low_open``)."""
  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected {what}, got {text!r}') from None
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high) or value != value:
      raise argparse.ArgumentTypeError(f'expected {what}, got {text}')
    return value
  return parse


_COUNT = _number(int, 1, what='a whole number >= 1')
_INDEX = _number(int, 0, what='a whole number >= 0')
_SIZE = _number(int, 0, what='a side length in pixels >= 0 (0 = native)')
_FPS = _number(float, 0, 1000, low_open=True, what='a frame rate in (0, 1000]')
_FRACTION = _number(float, 0, 1, low_open=True, what='a fraction in (0, 1]')
_CRF = _number(float, 0, 63, what='a crf in 0..63')


def _add_clip_args(p: argparse.ArgumentParser, frames: int, size: int | None):
  p.add_argument('clip', nargs='?', default=None,
                 help='video file or image pattern (default: the bundled sample clip)')
  p.add_argument('--frames', type=_COUNT, default=frames,
                 help=f'number of frames to use (default {frames})')
  p.add_argument('--start', type=_INDEX, default=0, help='first frame (default 0)')
  p.add_argument('--size', type=_SIZE, default=size,
                 help='short-side resize then centre crop to SIZE x SIZE '
                      f'(default {size}; 0 keeps the native size)')
  p.add_argument('--fps', type=_FPS, default=None,
                 help="frame rate of the streams (default: the clip's own)")


def _load_clip(args):
  """The clip of the common clip arguments -> (uint8 [T,H,W,3], fps, path)."""
  from jaxvr import assets, video

  path = args.clip or str(assets.sample_clip_path())
  frames, fps = video.read_clip(path, args.frames, start=args.start,
                                size=args.size or None)
  return frames, (args.fps or fps), path


def _check_output(path: str, folder: bool = False) -> None:
  """Raises OutputError unless ``path`` (a file, or a folder with
  ``folder``) can be written, before any work: a run should not fail at its
  end. The nearest existing folder on the way must accept a new file (tried
  with a temporary file, which also catches read-only mounts for root)."""
  import tempfile

  full = os.path.abspath(path)
  if os.path.isdir(full) != folder and os.path.exists(full):
    raise errors.OutputError(
        f'{path}: is {"a file" if folder else "a directory"}, expected '
        f'{"an output folder" if folder else "a file name to write"}')
  parent = full if folder else os.path.dirname(full)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise errors.OutputError(f'{path}: {parent} is a file, expected a folder')
  try:
    with tempfile.TemporaryFile(dir=parent):
      pass
  except OSError as err:
    raise errors.OutputError(
        f'{path}: cannot write in {parent} ({err.strerror})') from None


def _write_json(path: str, payload) -> None:
  from jaxvr import files

  files.write_text(path, json.dumps(payload, indent=1, default=float))


def cmd_codecs(args) -> int:
  """Size, compression factor and quality of real codecs on one clip."""
  from jaxvr import evaluation
  from jaxvr.report import tables

  if args.json:
    _check_output(args.json)
  frames, fps, path = _load_clip(args)
  settings = args.setting or evaluation.DEFAULT_SETTINGS
  names = [m for m in evaluation.ALL_METRICS
           if not (args.no_vmaf and m == 'vmaf')
           and not (args.no_strred and m == 'strred')]
  rows = evaluation.codec_sweep(frames, fps, settings, names)
  t, h, w, _ = frames.shape
  print(f'{os.path.basename(path)}: {t} frames {w}x{h} at {fps:g} fps; '
        'factor = lossless x264 yuv444p bytes / bytes')
  print(tables.markdown(rows))
  if args.json:
    _write_json(args.json, {'clip': path, 'frames': t, 'width': w,
                            'height': h, 'fps': fps, 'rows': rows})
  return 0


def cmd_compare(args) -> int:
  """Every chosen reducer on every clip, with tables and an HTML report."""
  from jaxvr import compare, evaluation
  from jaxvr.report import html, rates, tables
  from jaxvr.video import io as video_io

  _check_output(args.out, folder=True)
  for path in args.videos:
    video_io.check_path(path)
  names = args.reducers.split(',') if args.reducers else list(compare.DEFAULT_REDUCERS)
  metric_names = [m for m in evaluation.ALL_METRICS
                  if not (args.no_vmaf and m == 'vmaf')]
  spec = compare.ClipSpec(frames=args.frames, start=args.start,
                          size=args.size or None)
  shard = compare.parse_shard(args.shard) if args.shard else None
  rows = compare.run(args.videos, args.out, shard=shard,
                     merge_only=args.merge,
                     reducer_names=names, spec=spec, metric_names=metric_names)
  if rows is None:  # This process ran one shard; the merge writes the rest.
    print(f'{args.out}: shard rows written; the tables and report come with '
          f'the merge (process 0, or --merge once every shard is done)')
    return 0
  report = html.write_report(args.out, rows)
  ok = [r for r in rows if 'error' not in r]
  metrics = [m for m in html.QUALITY if any(m in r for r in ok)]
  metrics += tables.group_metrics(ok)
  summary = tables.summarize(ok, metrics)
  print(tables.markdown(tables.with_intervals(summary, metrics)))
  equivalents = rates.rate_equivalents(summary)
  if any(len(e) > 2 for e in equivalents):
    print('\nCodec rate for the same mean quality (ratio = method bpp / '
          'codec bpp):')
    print(tables.markdown(equivalents))
  failed = [r for r in rows if 'error' in r]
  for r in failed:
    print(f'failed: {r["clip"]} / {r["reducer"]}: {r["error"]}')
  print(f'wrote {report}, results.csv, results.json')
  if failed:
    print(f'{len(failed)} of {len(rows)} (clip, reducer) runs failed; the '
          f'others are in the results', file=sys.stderr)
    return 1
  return 0


def cmd_demo(args) -> int:
  """``compare`` on the bundled sample clip with the bundled weights."""
  from jaxvr import assets

  args.videos = [str(assets.sample_clip_path())]
  args.reducers = None
  args.start = 0
  args.shard, args.merge = None, False
  return cmd_compare(args)


def cmd_sparse_mp4(args) -> int:
  """Sparse MP4 encode (decimate + lossless stream) or decode (restore)."""
  from jaxvr import files, sparse_mp4, video
  from jaxvr.reducers import sparse_mp4 as reducer

  _check_output(args.output)
  if args.action == 'encode':
    frames, fps, _ = _load_clip(args)
    payload = sparse_mp4.encode(frames, fps=fps, layout=args.layout,
                                parity=args.parity, codec=args.codec)
    files.write_bytes(args.output, payload.to_bytes())
    print(f'{args.output}: {payload.size:,} bytes for {frames.shape[0]} frames '
          f'{frames.shape[2]}x{frames.shape[1]} ({args.layout}, {args.codec})')
    return 0
  payload = sparse_mp4.SparseMP4Payload.from_bytes(_read_payload(args.input))
  r = reducer.SparseMP4Reducer(
      args.restore, kernels=None if not args.dictionary else _load_kernels(args.dictionary))
  from jaxvr.reducers import Payload
  out = r.decode(Payload(payload.to_bytes()))
  video.write_video(args.output, out, fps=payload.fps, lossless=True)
  print(f'{args.output}: {out.shape[0]} frames restored ({args.restore})')
  return 0


def cmd_carv(args) -> int:
  """CARV: ST-MAE chunk significance, then per-chunk refresh."""
  import jax

  from jaxvr import assets
  from jaxvr.carv import pipeline

  _check_output(args.out, folder=True)
  params = config = None
  if args.model:
    params, config = pipeline.load_default_model(args.model)
  paths = pipeline.run_carv(
      args.video or assets.sample_clip_path(), args.out, params=params, config=config,
      n_samples=args.samples, mask_ratio=args.mask_ratio, budget=args.budget,
      estimator=args.estimator, invert=args.invert,
      key=jax.random.key(args.seed), start=args.start, max_frames=args.frames,
      crf=args.crf)
  from jaxvr.sharding import is_main_process
  if is_main_process():  # The one process that wrote them.
    for name, path in paths.items():
      print(f'{name}: {path}')
  return 0


def cmd_sparsegan(args) -> int:
  """Sparse-pixel GAN encode (learned or random mask) or decode (inpaint)."""
  from jaxvr import files, video
  from jaxvr.sparsegan import inference
  from jaxvr.sparsegan import payload as payload_lib

  _check_output(args.output)
  if args.action == 'encode':
    frames, fps, _ = _load_clip(args)
    if args.random_density:
      payload = inference.encode_random(frames, args.random_density, fps=fps,
                                        seed=args.seed)
    else:
      payload = inference.encode(frames, args.weights, fps=fps, seed=args.seed)
    files.write_bytes(args.output, payload.to_bytes())
    _, mask = payload_lib.decode(payload)
    t, h, w, _ = frames.shape
    print(f'{args.output}: {payload.size:,} bytes ({payload.size / t:,.0f} per frame) '
          f'for {t} frames {w}x{h}; {100 * mask.mean():.2f}% of pixels kept')
    return 0
  p = payload_lib.SparsePixelPayload.from_bytes(_read_payload(args.input))
  out = inference.decode(p, args.weights, seed=args.seed)
  video.write_video(args.output, out, fps=p.fps, lossless=True)
  print(f'{args.output}: {out.shape[0]} frames inpainted')
  return 0


def cmd_convert_stmae(args) -> int:
  """Official PyTorch ST-MAE weights -> an orbax params folder."""
  from jaxvr import checkpoint, stmae
  from jaxvr.stmae.convert import config_dict

  _check_output(args.out_dir, folder=True)
  if args.config:
    config = stmae.STMAEConfig(**_read_config_json(args.config,
                                                   stmae.STMAEConfig))
  else:
    config = stmae.vit_large_config()
  state_dict = stmae.load_torch_checkpoint(args.checkpoint)
  config = stmae.config_for_state_dict(state_dict, config)
  params = stmae.convert_state_dict(state_dict, config)
  out = checkpoint.save_params(args.out_dir, params, config_dict(config))
  print(f'{out}: {stmae.param_count(params):,} parameters '
        f'({"PySlowFast" if config.decoder_cls_from_encoder else "mae_st"} layout)')
  return 0


def _read_config_json(path: str, config_class) -> dict:
  """The keywords of ``config_class`` in the JSON file ``path``; ConfigError
  if the file is missing, not a JSON object or names an unknown field."""
  import dataclasses

  try:
    with open(path, encoding='utf-8') as f:
      config = json.load(f)
  except OSError as err:
    raise errors.ConfigError(f'{path}: cannot read ({err.strerror})') from None
  except ValueError as err:   # JSONDecodeError, UnicodeDecodeError
    raise errors.ConfigError(f'{path}: not valid JSON ({err})') from None
  if not isinstance(config, dict):
    raise errors.ConfigError(f'{path}: expected a JSON object of '
                             f'{config_class.__name__} fields')
  known = {f.name for f in dataclasses.fields(config_class)}
  unknown = sorted(set(config) - known)
  if unknown:
    raise errors.ConfigError(
        f'{path}: unknown {config_class.__name__} fields {unknown}; expected '
        f'some of {sorted(known)}')
  return config


def _read_payload(path: str) -> bytes:
  if os.path.isdir(path):
    raise errors.PayloadError(f'{path}: is a directory, expected a payload file')
  if not os.path.isfile(path):
    raise errors.CodecError(f'{path}: no such payload file')
  with open(path, 'rb') as f:
    return f.read()


def _load_kernels(path: str):
  import zipfile

  import numpy as np

  if not os.path.isfile(path):
    raise errors.CheckpointError(f'{path}: no such dictionary file')
  expected = 'an .npz with a "kernels" array [K, 3, kh, kw]'
  try:
    z = np.load(path)   # refuses pickles (ValueError): no code runs
  except (OSError, ValueError, zipfile.BadZipFile) as err:
    raise errors.CheckpointError(
        f'{path}: expected {expected} ({errors.one_line(err)})') from None
  if not isinstance(z, np.lib.npyio.NpzFile):
    raise errors.CheckpointError(f'{path}: expected {expected}, got an .npy')
  with z:
    if 'kernels' not in z:
      raise errors.CheckpointError(f'{path}: expected {expected}')
    return z['kernels']


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog='jaxvr',
      description='Learned video reduction in JAX: CARV, sparse-pixel GAN and '
                  'Sparse MP4, measured against real codecs.')
  sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

  p = sub.add_parser(
      'codecs', help='compare real codecs on a clip (bytes, factor, PSNR, SSIM, ST-RRED, VMAF)',
      description='Encode a clip with real codecs (the ffmpeg that imageio-ffmpeg '
                  'ships) and print bytes, compression factor and quality. The '
                  'default crop (first 48 frames, short side 128 with Pillow '
                  'LANCZOS, centre crop) is the codec-anchor procedure.')
  _add_clip_args(p, frames=48, size=128)
  p.add_argument('--setting', action='append', default=None,
                 help="codec setting 'codec[:crf=N|:lossless][:pix_fmt]', "
                      "repeatable (e.g. libx264:crf=23:yuv420p); default: a standard set")
  p.add_argument('--no-vmaf', action='store_true', help='skip VMAF')
  p.add_argument('--no-strred', action='store_true', help='skip ST-RRED')
  p.add_argument('--json', default=None, help='also write the rows to this JSON file')
  p.set_defaults(func=cmd_codecs)

  p = sub.add_parser(
      'compare', help='run every reducer and codec on videos; tables, plots and an HTML report',
      description='Run reducers (methods, baselines and codecs) on each video at the '
                  'working resolution, measure bytes and quality, and write '
                  'results.csv, results.json and a self-contained report.html. An '
                  'interrupted run resumes where it stopped.')
  p.add_argument('videos', nargs='+', help='video files')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--reducers', default=None,
                 help='comma-separated reducer names (default: a standard set; '
                      'see `jaxvr reducers`)')
  p.add_argument('--frames', type=_COUNT, default=16, help='frames per clip (default 16)')
  p.add_argument('--start', type=_INDEX, default=0, help='first frame (default 0)')
  p.add_argument('--size', type=_SIZE, default=112,
                 help='working resolution: short side, then centre crop (default 112; 0 = native)')
  p.add_argument('--no-vmaf', action='store_true', help='skip VMAF')
  p.add_argument('--shard', default=None, metavar='I/N',
                 help='run only shard I of N (clips I, I+N, ...) into its own '
                      'results.shard-I-of-N.jsonl, for schedulers that start '
                      'independent jobs; then run once with --merge')
  p.add_argument('--merge', action='store_true',
                 help="merge every shard's results (same videos and options) "
                      'into results.json, results.csv and report.html; runs '
                      'nothing')
  p.set_defaults(func=cmd_compare)

  p = sub.add_parser(
      'demo', help='compare every method and codec on the bundled sample clip',
      description='Run `jaxvr compare` on the bundled sample clip (carphone, 16 '
                  'frames at 112x112) with the bundled default weights of every '
                  'method, and write the tables and report.html.')
  p.add_argument('--out', default='jaxvr_demo', help='output folder (default jaxvr_demo)')
  p.add_argument('--frames', type=_COUNT, default=16, help='frames (default 16)')
  p.add_argument('--size', type=_SIZE, default=112, help='working resolution (default 112)')
  p.add_argument('--no-vmaf', action='store_true', help='skip VMAF')
  p.set_defaults(func=cmd_demo)

  p = sub.add_parser('reducers', help='list the registered reducers')
  p.set_defaults(func=lambda args: print('\n'.join(__import__(
      'jaxvr.reducers', fromlist=['available']).available())) or 0)

  p = sub.add_parser(
      'sparse-mp4', help='Sparse MP4: decimate 4:1 + lossless stream, or restore',
      description='encode: drop every other frame and half of the pixels, write '
                  'the rest as a lossless stream. decode: restore every missing '
                  'pixel by sparse coding (or a classical interpolation).')
  sp = p.add_subparsers(dest='action', required=True)
  e = sp.add_parser('encode', help='video -> payload')
  _add_clip_args(e, frames=48, size=0)
  e.add_argument('output', help='payload file to write')
  e.add_argument('--layout', default='packed', choices=['packed', 'zeros'])
  e.add_argument('--parity', default='alternate', choices=['alternate', 'fixed'])
  e.add_argument('--codec', default='libx264', choices=['libx264', 'libx264rgb', 'ffv1'])
  d = sp.add_parser('decode', help='payload -> restored video (lossless mp4)')
  d.add_argument('input', help='payload file')
  d.add_argument('output', help='video file to write (.mp4)')
  d.add_argument('--restore', default='fista', choices=['fista', 'lca', 'linear', 'copy'])
  d.add_argument('--dictionary', default=None,
                 help='.npz with "kernels" [K,3,kh,kw] (default: the bundled one)')
  p.set_defaults(func=cmd_sparse_mp4)

  p = sub.add_parser(
      'carv', help='CARV: reduce a video by ST-MAE chunk significance',
      description='Estimate each spatiotemporal chunk\'s significance by running '
                  'the ST-MAE under many random masks, then refresh every chunk '
                  'region of the full-resolution video at its own rate (on average '
                  'once per BUDGET frames). Writes reduced.mp4, the significance '
                  'map (.npy) and a heatmap figure.')
  p.add_argument('video', nargs='?', default=None,
                 help='video file (default: the bundled sample clip)')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--model', default=None,
                 help='ST-MAE params folder (save_params or convert-stmae output; '
                      'default: the bundled small model)')
  p.add_argument('--budget', type=_COUNT, default=4,
                 help='N: each chunk refreshes once per N frames on average (default 4)')
  p.add_argument('--estimator', default='visible', choices=['visible', 'masked'],
                 help='visible: mean loss of the samples where the chunk was seen '
                      '(the paper); masked: its reconstruction error when hidden')
  p.add_argument('--invert', action='store_true',
                 help='refresh LOW-significance chunks more often (the paper\'s text); '
                      'default follows the released code: high-loss chunks more often')
  p.add_argument('--samples', type=_COUNT, default=DEFAULT_SAMPLES,
                 help=f'random masks (default {DEFAULT_SAMPLES}; the paper used 500)')
  p.add_argument('--mask-ratio', type=_FRACTION, default=0.98, help='masking ratio (default 0.98)')
  p.add_argument('--seed', type=_INDEX, default=0, help='random seed of the masks')
  p.add_argument('--start', type=_INDEX, default=0, help='first frame')
  p.add_argument('--frames', type=_COUNT, default=None, help='frames to reduce (default all)')
  p.add_argument('--crf', type=_CRF, default=18, help='x264 crf of reduced.mp4')
  p.set_defaults(func=cmd_carv)

  p = sub.add_parser(
      'sparsegan', help='sparse-pixel GAN: keep a few %% of pixels, or inpaint them',
      description='encode: the mask generator picks the pixels to keep; the mask '
                  '(LZMA-coded bits) and the kept pixels are the payload. decode: '
                  'the inpainting generator restores every frame.')
  sp = p.add_subparsers(dest='action', required=True)
  e = sp.add_parser('encode', help='video -> payload')
  _add_clip_args(e, frames=16, size=0)
  e.add_argument('output', help='payload file to write')
  e.add_argument('--random-density', type=_FRACTION, default=None,
                 help='use an exact-count random mask of this density instead of '
                      'the learned one (e.g. 0.05)')
  for q in (e, d := sp.add_parser('decode', help='payload -> video (lossless mp4)')):
    q.add_argument('--weights', default=None,
                   help='weights folder from train.sparse_gan --export '
                        '(default: the bundled weights)')
    q.add_argument('--seed', type=_INDEX, default=0, help='noise seed')
  d.add_argument('input', help='payload file')
  d.add_argument('output', help='video file to write (.mp4)')
  p.set_defaults(func=cmd_sparsegan)

  p = sub.add_parser(
      'convert-stmae', help='convert official PyTorch ST-MAE weights to jaxvr (orbax)',
      description='Load a mae_st or PySlowFast .pth checkpoint safely '
                  '(torch.load(weights_only=True): no code runs), map every '
                  'tensor onto the Flax ST-MAE and write an orbax params folder '
                  'with its config. Needs the torch extra.')
  p.add_argument('checkpoint', help='.pth file')
  p.add_argument('out_dir', help='folder to write (params/ and config.json)')
  p.add_argument('--config', default=None,
                 help='JSON file of STMAEConfig keywords (default: the ViT-L/16 '
                      'K400 pre-training config; PySlowFast files switch to its '
                      'decoder layout automatically)')
  p.set_defaults(func=cmd_convert_stmae)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    # JAXVR_DISTRIBUTED=1: one process of a multi-process run (see README).
    from jaxvr import sharding
    sharding.maybe_initialize_distributed()
    return args.func(args)
  except errors.JaxvrError as err:
    print(f'jaxvr {args.command}: error: {errors.one_line(err)}',
          file=sys.stderr)
    return 2
  except OSError as err:   # e.g. the disk filled up while writing
    where = f'{err.filename}: ' if err.filename else ''
    print(f'jaxvr {args.command}: error: {where}{err.strerror or err}',
          file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'jaxvr {args.command}: interrupted', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
