"""Domain errors → gRPC status codes, in one place.

Every RPC passes through `status_for`; a handler never picks a status code itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from imagesvc import errors as images
from imagesvc.auth import InvalidCredentials
from imagesvc.endpoints import InvalidRegistryConfig
from runtime import container as oci
from runtime.spec import SpecError
from sandbox import errors as domain

# Ordered most specific first: the first class in the exception's MRO that is listed wins.
_CODES: dict[type[BaseException], grpc.StatusCode] = {
    domain.NotFound: grpc.StatusCode.NOT_FOUND,
    domain.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    domain.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    domain.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    domain.Unavailable: grpc.StatusCode.UNAVAILABLE,
    domain.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    domain.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    # Image service. Content that fails verification (digest, diff ID, unsafe or corrupt
    # layer, bad manifest) is refused, not a crisp bug: FAILED_PRECONDITION. A registry
    # refusing credentials is UNKNOWN, as containerd reports it (kubelet shows the message).
    images.InvalidReference: grpc.StatusCode.INVALID_ARGUMENT,
    images.InvalidDigest: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidCredentials: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRegistryConfig: grpc.StatusCode.INVALID_ARGUMENT,
    images.ImageNotFound: grpc.StatusCode.NOT_FOUND,
    images.RegistryNotFound: grpc.StatusCode.NOT_FOUND,
    images.NoMatchingPlatform: grpc.StatusCode.NOT_FOUND,
    images.AuthenticationFailed: grpc.StatusCode.UNKNOWN,
    images.PullTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    images.PullCancelled: grpc.StatusCode.CANCELLED,
    images.RegistryUnavailable: grpc.StatusCode.UNAVAILABLE,
    images.DigestMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    images.InvalidManifest: grpc.StatusCode.FAILED_PRECONDITION,
    images.InvalidLayer: grpc.StatusCode.FAILED_PRECONDITION,
    images.LayerInUse: grpc.StatusCode.FAILED_PRECONDITION,
    images.RegistryError: grpc.StatusCode.UNKNOWN,
    # Embedded runtime. A process that cannot be started (no such executable, bad
    # working dir) is UNKNOWN, as containerd reports it; kubelet shows the message.
    oci.ContainerNotFoundError: grpc.StatusCode.NOT_FOUND,
    oci.ContainerExistsError: grpc.StatusCode.ALREADY_EXISTS,
    oci.InvalidStateError: grpc.StatusCode.FAILED_PRECONDITION,
    oci.ExecTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    oci.ContainerError: grpc.StatusCode.UNKNOWN,
    SpecError: grpc.StatusCode.INVALID_ARGUMENT,
}


@dataclass(frozen=True)
class RpcStatus:
    code: grpc.StatusCode
    message: str
    expected: bool  # False for bugs: the caller logs the traceback


def status_for(exc: BaseException, method: str) -> RpcStatus:
    """The status a failed call of `method` reports for `exc`.

    `method` is the short RPC name (e.g. "RuntimeService/Version").
    """
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return RpcStatus(code, str(exc) or cls.__name__, expected=True)
    if type(exc) is NotImplementedError:
        # Raised by the generated servicer base class for RPCs crisp does not serve yet.
        return RpcStatus(
            grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by crisp", expected=True
        )
    return RpcStatus(
        grpc.StatusCode.INTERNAL,
        f"{method} failed: {type(exc).__name__}: {exc}",
        expected=False,
    )
