from __future__ import annotations

import grpc
import pytest

from cri.errors import status_for
from sandbox import errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFound("pod abc not found"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("pod x exists"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.FailedPrecondition("not ready"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable("cni down"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("took too long"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.Unimplemented("no apparmor"), grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_domain_errors_map_to_codes_and_keep_their_message(
    exc: Exception, code: grpc.StatusCode
) -> None:
    status = status_for(exc, "RuntimeService/RunPodSandbox")
    assert status.code == code
    assert status.message == str(exc)
    assert status.expected


def test_subclass_maps_like_its_base() -> None:
    class PodNotFound(errors.NotFound):
        pass

    assert status_for(PodNotFound("x"), "m").code == grpc.StatusCode.NOT_FOUND


def test_missing_rpc_is_unimplemented_and_named() -> None:
    status = status_for(NotImplementedError("Method not implemented!"), "ImageService/PullImage")
    assert status.code == grpc.StatusCode.UNIMPLEMENTED
    assert "ImageService/PullImage" in status.message


def test_unexpected_exception_is_internal_and_flagged_as_a_bug() -> None:
    status = status_for(KeyError("oops"), "RuntimeService/Status")
    assert status.code == grpc.StatusCode.INTERNAL
    assert "RuntimeService/Status" in status.message and "KeyError" in status.message
    assert not status.expected


def test_plain_builtin_errors_are_not_guessed() -> None:
    # A stray ValueError from a bug must not look like the client's fault.
    assert status_for(ValueError("x"), "m").code == grpc.StatusCode.INTERNAL
    assert status_for(LookupError("x"), "m").code == grpc.StatusCode.INTERNAL
