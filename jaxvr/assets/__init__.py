"""Small files shipped with jaxvr so the default runs need no download.

See README.md in this folder for each file's source, licence and how it
was made.
"""

import pathlib

ASSETS = pathlib.Path(__file__).parent


def sample_clip_path() -> pathlib.Path:
  """The bundled sample clip: 65 frames of carphone, 176x144, 29.97 fps."""
  return ASSETS / 'sample.mp4'
