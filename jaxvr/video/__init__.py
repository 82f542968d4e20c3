"""Video in and out, array transforms, tubelets and chunk grids."""

from jaxvr.video.io import (
  VideoInfo,
  file_sha256,
  iter_frames,
  probe_video,
  read_clip,
  read_luma,
  read_video,
  write_video,
)
from jaxvr.video.transforms import (
  MEAN,
  STD,
  center_crop,
  denormalize,
  luma,
  normalize,
  random_crop,
  resize,
  resize_short_side,
  short_side_size,
  to_uint8,
)
from jaxvr.video.tubes import (
  chunk_bounds,
  chunk_index,
  chunk_means,
  expand_chunk_grid,
  patchify,
  unpatchify,
)

__all__ = [
  'chunk_bounds', 'chunk_index', 'chunk_means', 'expand_chunk_grid',
  'patchify', 'unpatchify',
  'MEAN', 'STD', 'VideoInfo', 'center_crop', 'denormalize', 'file_sha256',
  'iter_frames',
  'luma', 'normalize', 'probe_video', 'random_crop', 'read_clip', 'read_luma', 'read_video', 'resize',
  'resize_short_side', 'short_side_size', 'to_uint8', 'write_video',
]
