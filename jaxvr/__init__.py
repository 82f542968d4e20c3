"""jaxvr: learned video reduction in JAX/Flax.

Three published methods as pure, jittable functions (CARV chunk significance
from an ST-MAE, a sparse-pixel GAN, Sparse MP4 restored by LCA sparse coding),
with real codec byte counts and reference-exact quality metrics.
"""

__version__ = "0.1.0"
