"""ST-MAE: the spatiotemporal masked autoencoder, numerically the official one.

Feichtenhofer, Fan, Li, He, "Masked Autoencoders As Spatiotemporal Learners",
NeurIPS 2022. Videos are channels-last ``[N, T, H, W, C]``, normalised
(mean 0.45, std 0.225 for the released models).
"""

from jaxvr.stmae.convert import (
    config_for_state_dict,
    convert_checkpoint_file,
    convert_state_dict,
    export_state_dict,
    is_pyslowfast,
    load_torch_checkpoint,
    param_count,
    unwrap_state_dict,
)
from jaxvr.stmae.forward import (
    ForwardOutput,
    Tokens,
    abstract_params,
    compute_target,
    encode_tokens,
    forward,
    forward_from_tokens,
    init_params,
)
from jaxvr.stmae.masking import MaskIds, ids_from_noise, len_keep, sample_noise
from jaxvr.stmae.model import (
    REMAT_POLICIES,
    STMAE,
    STMAEConfig,
    pyslowfast_config,
    stack_blocks,
    unstack_blocks,
    vit_large_config,
)

__all__ = [
    'REMAT_POLICIES', 'STMAE', 'STMAEConfig', 'ForwardOutput', 'MaskIds',
    'Tokens', 'abstract_params', 'compute_target', 'config_for_state_dict',
    'convert_checkpoint_file', 'convert_state_dict', 'encode_tokens',
    'export_state_dict', 'forward', 'forward_from_tokens', 'ids_from_noise',
    'init_params',
    'is_pyslowfast', 'len_keep', 'load_torch_checkpoint', 'param_count',
    'pyslowfast_config', 'sample_noise', 'stack_blocks', 'unstack_blocks',
    'unwrap_state_dict', 'vit_large_config',
]
