"""Every reduction method and baseline behind one interface.

A reducer turns a video into a payload (the bytes that would be stored or
sent, measured by really encoding them) and back into a video. The
evaluation layer runs reducers by name and never knows which method it
runs. Adding a reducer is one small module plus one ``register`` call.
"""

from jaxvr.reducers.base import (
  Payload,
  Reducer,
  available,
  create,
  register,
)

__all__ = ['Payload', 'Reducer', 'available', 'create', 'register']
