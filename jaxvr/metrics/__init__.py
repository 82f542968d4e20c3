"""Video quality metrics on luma in 0..255 units.

Direction: MSE, ST-RRED and ST-RRED-SSN are distortions (lower is better);
PSNR, SSIM and VMAF are fidelities (higher is better).
"""

import importlib.util

from jaxvr.metrics.pixel import mse, mse_clip, psnr, psnr_clip
from jaxvr.metrics.ssim import ssim, ssim_clip
from jaxvr.metrics.strred import (
    StrredDetails,
    StrredResult,
    strred,
    strred_details,
)

__all__ = [
    'StrredDetails', 'StrredResult', 'mse', 'mse_clip', 'psnr', 'psnr_clip',
    'ssim', 'ssim_clip', 'strred', 'strred_details',
]

# VMAF wraps ffmpeg's libvmaf and lives in its own module.
if importlib.util.find_spec('jaxvr.metrics.vmaf') is not None:
  from jaxvr.metrics.vmaf import vmaf  # noqa: F401
  __all__.append('vmaf')
