"""Codec-equivalent rates and Bjontegaard deltas of a summary."""

import math

import numpy as np
import pytest

from jaxvr.report import rates


def _summary():
  # x264: PSNR = 30 + 6 log2(bpp / 0.2), i.e. +6 dB per doubling.
  x264 = [{'reducer': f'x264-crf{c}', 'bpp': b,
           'psnr': 30 + 6 * math.log2(b / 0.2), 'vmaf': 80.0 + 10 * b}
          for c, b in ((38, 0.1), (33, 0.2), (28, 0.4), (23, 0.8))]
  # av1: exactly x264's curve at half the rate.
  av1 = [{**r, 'reducer': r['reducer'].replace('x264', 'av1'),
          'bpp': r['bpp'] / 2} for r in x264]
  methods = [{'reducer': 'sparse-mp4', 'bpp': 2.0, 'psnr': 33.0, 'vmaf': 85},
             {'reducer': 'weak', 'bpp': 1.0, 'psnr': 10.0, 'vmaf': 99}]
  return x264 + av1 + methods


def test_equivalent_rate_inverts_the_codec_curve():
  rows = {r['reducer']: r for r in rates.rate_equivalents(_summary())}
  # 33 dB is half a doubling above 30 dB: 0.2 * 2**0.5 bpp for x264.
  sp = rows['sparse-mp4']
  assert sp['x264_psnr_bpp'] == pytest.approx(0.2 * 2**0.5)
  assert sp['av1_psnr_bpp'] == pytest.approx(0.1 * 2**0.5)
  assert sp['x264_psnr_ratio'] == pytest.approx(2.0 / (0.2 * 2**0.5))
  weak = rows['weak']
  assert weak['x264_psnr_bpp'] == '<range'
  assert weak['x264_vmaf_bpp'] == '>range'
  assert not any(r.startswith(('x264-', 'av1-')) for r in rows)


def test_bd_rate_of_a_curve_at_half_the_rate():
  (row,) = rates.bd_rates(_summary())
  assert row['codec'] == 'av1' and row['anchor'] == 'x264'
  assert row['bd_rate_psnr'] == pytest.approx(-50.0, abs=0.5)


def test_bd_rate_is_left_out_without_enough_overlap():
  summary = [r for r in _summary() if not r['reducer'].startswith('av1')]
  # PSNR: barely overlaps x264's (24-42 dB); VMAF: x264's at half the rate.
  summary += [{'reducer': f'av1-crf{c}', 'bpp': b / 2, 'psnr': q,
               'vmaf': 80.0 + 10 * b}
              for c, b, q in ((55, 0.1, 40.0), (45, 0.2, 44.0),
                              (35, 0.4, 48.0), (25, 0.8, 52.0))]
  (row,) = rates.bd_rates(summary, metrics=('psnr', 'vmaf'))
  assert row['bd_rate_psnr'] is None
  assert row['bd_rate_vmaf'] == pytest.approx(-50.0, abs=0.5)


def test_curve_needs_two_points():
  assert rates.equivalent_bpp([(0.1, 30.0)], 30.0) == (None, 'below')
  assert rates.equivalent_bpp([], 30.0)[0] is None
  curve = [(0.1, 30.0), (0.4, 36.0)]
  assert rates.equivalent_bpp(curve, 33.0)[0] == pytest.approx(0.2)
  assert np.isclose(rates.equivalent_bpp(curve, 36.0)[0], 0.4)
