"""Python client of titand (gRPC service titand.v1.Inference).

Run client/python/generate.sh first: it generates inference_pb2*.py from proto/titand/v1/inference.proto.
"""
try:
    from . import inference_pb2 as pb  # noqa: F401
    from . import inference_pb2_grpc as pb_grpc  # noqa: F401
except ImportError as e:  # pragma: no cover - a setup error, explained
    raise ImportError(
        "titand_client: generated modules missing; run client/python/generate.sh") from e

from .client import Client, Completion  # noqa: E402,F401

__all__ = ["Client", "Completion", "pb", "pb_grpc"]
