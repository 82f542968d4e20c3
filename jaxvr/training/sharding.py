"""The former home of :mod:`jaxvr.sharding`: the same module under its old name.

Methods (CARV, the sparse GAN, the reducers) use ``jaxvr.sharding`` without
importing the training package; trainers and older user code may import it
from here.
"""

import sys

from jaxvr import sharding

sys.modules[__name__] = sharding
