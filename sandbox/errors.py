"""The domain's error vocabulary.

Domain code raises these; the gRPC layer maps each kind to one status code in one place
(`cri/errors.py`). Messages name the object and the reason, since they reach the user as is.
"""


class DomainError(Exception):
    """Base of every error the domain expects to report to a client."""


class NotFound(DomainError, LookupError):
    """The named pod, container, image or file does not exist."""


class AlreadyExists(DomainError):
    """An object with the same identity exists already."""


class InvalidArgument(DomainError, ValueError):
    """The request itself is malformed or names something impossible."""


class FailedPrecondition(DomainError):
    """The request is valid but the object is in the wrong state for it."""


class Unavailable(DomainError):
    """A dependency (network plugin, registry, monitor) cannot be reached right now."""


class DeadlineExceeded(DomainError, TimeoutError):
    """The operation did not finish in the time it was given."""


class Unimplemented(DomainError, NotImplementedError):
    """The feature is not supported by crisp or by this host."""
