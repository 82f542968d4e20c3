"""The former home of :mod:`jaxvr.checkpoint`: the same module under its old name.

Methods (CARV, the sparse GAN, the reducers) use ``jaxvr.checkpoint`` without
importing the training package; trainers and older user code may import it
from here.
"""

import sys

from jaxvr import checkpoint

sys.modules[__name__] = checkpoint
