r"""How much CARV's significance agrees with motion energy, per clip.

Reads the significance maps the CARV reducers saved in a ``jaxvr compare``
output folder (``outputs/<clip>/<reducer>.npz``, key ``significance``) and
prints the Spearman rank correlation of the masked estimator's map with the
motion-energy map and with the visible estimator's map, per clip and as a
median. Run ``jaxvr compare`` with the three reducers first::

  jaxvr compare CLIP... --out DIR --reducers carv-masked-n4,carv-visible-n4,motion-energy-n4
  python -m eval.carv_map_agreement DIR
"""

import pathlib
import sys

import numpy as np
from scipy.stats import spearmanr

PAIRS = (('carv-masked-n4', 'motion-energy-n4'),
         ('carv-masked-n4', 'carv-visible-n4'))


def agreement(out_dir) -> list[tuple[str, list[float]]]:
  """``[(clip, [rho per pair])]`` for clips with every map."""
  rows = []
  for clip in sorted(pathlib.Path(out_dir, 'outputs').iterdir()):
    maps = {}
    for name in {n for pair in PAIRS for n in pair}:
      path = clip / f'{name}.npz'
      if path.exists():
        with np.load(path) as z:
          if 'significance' in z.files:
            maps[name] = z['significance'].ravel()
    if all(a in maps and b in maps for a, b in PAIRS):
      rows.append((clip.name, [float(spearmanr(maps[a], maps[b])[0])
                               for a, b in PAIRS]))
  return rows


def main(argv) -> int:
  if len(argv) != 2:
    print(__doc__, file=sys.stderr)
    return 2
  rows = agreement(argv[1])
  if not rows:
    print(f'{argv[1]}: no clip with all of {sorted({n for p in PAIRS for n in p})}',
          file=sys.stderr)
    return 2
  print('| clip | ' + ' | '.join(f'{a} vs {b}' for a, b in PAIRS) + ' |')
  print('|---|' + '---|' * len(PAIRS))
  for clip, rhos in rows:
    print(f'| {clip} | ' + ' | '.join(f'{r:.2f}' for r in rhos) + ' |')
  med = np.median([r for _, r in rows], axis=0)
  print('| median | ' + ' | '.join(f'{m:.2f}' for m in med) + ' |')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
