"""The ``jaxvr`` command.

Every subcommand is a thin layer over the library: it parses arguments,
calls one library function and prints or writes the result. Bad input
(a jaxvr error) is printed on one line to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jaxvr import errors


def _add_clip_args(p: argparse.ArgumentParser, frames: int, size: int | None):
  p.add_argument('clip', nargs='?', default=None,
                 help='video file or image pattern (default: the bundled sample clip)')
  p.add_argument('--frames', type=int, default=frames,
                 help=f'number of frames to use (default {frames})')
  p.add_argument('--start', type=int, default=0, help='first frame (default 0)')
  p.add_argument('--size', type=int, default=size,
                 help='short-side resize then centre crop to SIZE x SIZE '
                      f'(default {size}; 0 keeps the native size)')
  p.add_argument('--fps', type=float, default=None,
                 help="frame rate of the streams (default: the clip's own)")


def _load_clip(args):
  """Reads frames per the common clip arguments -> (uint8 [T,H,W,3], fps)."""
  from jaxvr import assets, video
  from jaxvr.video.transforms import resize_short_side_pil

  path = args.clip or str(assets.sample_clip_path())
  info = video.probe_video(path)
  frames = video.read_video(path, max_frames=args.frames, start=args.start)
  if args.size:
    frames = resize_short_side_pil(frames, args.size)
    frames = video.center_crop(frames, (args.size, args.size))
  return frames, (args.fps or info.fps or 24.0), path


def _write_json(path: str, payload) -> None:
  from jaxvr.video.io import _atomic_write

  _atomic_write(path, json.dumps(payload, indent=1, default=float).encode())


def cmd_codecs(args) -> int:
  """Size, compression factor and quality of real codecs on one clip."""
  from jaxvr import evaluation
  from jaxvr.report import tables

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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
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
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return args.func(args)
  except errors.JaxvrError as err:
    print(f'jaxvr {args.command}: error: {err}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'jaxvr {args.command}: interrupted', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
