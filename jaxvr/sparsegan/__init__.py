"""Sparse-pixel video GAN (Nittala et al., after Peter's MG+WGAN).

A mask generator keeps a few percent of the pixels of every frame, an
inpainting generator restores the frames from them, ConvGRUs carry state
over time, and a spatial and a temporal spectral-norm critic supply the
Wasserstein signal.
"""

from jaxvr.sparsegan.binarize import (
    mask_count,
    random_mask,
    straight_through_round,
)
from jaxvr.sparsegan.convgru import ConvGRUCell, conv_gru
from jaxvr.sparsegan.networks import (
    Critics,
    DilBlock,
    Hourglass,
    InpaintingGenerator,
    MaskGenerator,
    SpatialCritic,
    TemporalCritic,
    keras_hard_sigmoid,
)

__all__ = [
    'ConvGRUCell',
    'Critics',
    'DilBlock',
    'Hourglass',
    'InpaintingGenerator',
    'MaskGenerator',
    'SpatialCritic',
    'TemporalCritic',
    'conv_gru',
    'keras_hard_sigmoid',
    'mask_count',
    'random_mask',
    'straight_through_round',
]
