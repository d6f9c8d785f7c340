"""gRPC adapter of runtime.v1.ImageService.

Nothing is served yet: every RPC falls through to the generated base class and is answered
UNIMPLEMENTED naming the RPC (see cri/interceptors.py).
"""

from __future__ import annotations

from criapi import api_pb2_grpc as pb_grpc


class ImageService(pb_grpc.ImageServiceServicer):
    pass
