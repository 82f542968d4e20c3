"""Small files shipped with jaxvr so the default runs need no download.

See README.md in this folder for each file's source, licence and how it
was made.
"""

import pathlib

ASSETS = pathlib.Path(__file__).parent


def sample_clip_path() -> pathlib.Path:
  """The bundled sample clip: 65 frames of carphone, 176x144, 29.97 fps."""
  return ASSETS / 'sample.mp4'


# Every bundled model: a weights folder or file, with its training record
# (``training_clips.json`` inside a folder, ``<stem>.training_clips.json``
# beside a file) naming the clips it was fitted on.
BUNDLED_MODELS = ('stmae_small', 'sparsegan_small', 'sparsegan_random5',
                  'sparsegan_random10', 'autoencoder', 'lca_dictionary.npz')


def bundled_model_paths() -> list[pathlib.Path]:
  """Paths of the bundled models (see ``BUNDLED_MODELS``)."""
  return [ASSETS / name for name in BUNDLED_MODELS]
