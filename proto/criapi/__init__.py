"""Generated Python stubs of the Kubernetes CRI v1 API (protobuf package ``runtime.v1``).

``criapi.api_pb2`` holds the messages and ``criapi.api_pb2_grpc`` the
RuntimeService/ImageService stubs and servicers. Every module here except this
one is generated from ``proto/api.proto`` by ``proto/generate.py`` (``make proto``);
do not edit them by hand.
"""
