"""CARV: video reduction by ST-MAE chunk significance and refresh rates.

Chhabra & Yang, "Algorithmic Video Reduction by Estimating Chunk Significance
Using Spatial-Temporal Masked Auto Encoders".
"""

from jaxvr.carv import pipeline  # noqa: F401  (high-level: run_carv, reduce)
from jaxvr.carv.baselines import (
    every_nth_frame_flags,
    motion_energy,
    nth_random_chunk_flags,
)
from jaxvr.carv.schedule import (
    apply_refresh,
    apply_refresh_stream,
    refresh_flags,
    refresh_fraction,
    refresh_rates,
    schedule_from_significance,
)
from jaxvr.carv.significance import (
    ESTIMATORS,
    estimate_significance,
    resolve_batch_size,
    significance_from_sums,
    significance_sums,
    spearman,
)

__all__ = [
    'apply_refresh', 'apply_refresh_stream', 'every_nth_frame_flags',
    'motion_energy', 'nth_random_chunk_flags', 'refresh_flags',
    'refresh_fraction', 'refresh_rates',
    'schedule_from_significance',
    'ESTIMATORS', 'estimate_significance', 'resolve_batch_size',
    'significance_from_sums', 'significance_sums', 'spearman',
]
