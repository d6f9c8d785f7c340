"""Domain errors of the image service.

They live together so that the gRPC layer can map them to status codes in one place:
the ``ValueError`` family is INVALID_ARGUMENT, the ``LookupError`` family NOT_FOUND,
``LayerInUse`` FAILED_PRECONDITION, and the rest (corrupt or hostile content) is
reported as the error of the pull that fetched it.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base of every error raised on purpose by ``imagesvc``."""


class InvalidReference(ImageError, ValueError):
    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


class InvalidDigest(ImageError, ValueError):
    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"invalid digest {digest!r}: {reason}")
        self.digest = digest
        self.reason = reason


class DigestMismatch(ImageError):
    """Content does not hash (or measure) to what its descriptor promised."""

    def __init__(self, expected: str, actual: str, what: str = "digest") -> None:
        super().__init__(f"{what} mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class BlobNotFound(ImageError, LookupError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} not found in content store")
        self.digest = digest


class InvalidLayer(ImageError):
    """A layer archive that cannot be unpacked: corrupt, truncated or unsupported."""


class UnsafeLayer(InvalidLayer):
    """A layer entry that would write (or link) outside the layer directory."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"unsafe layer entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


class LayerNotFound(ImageError, LookupError):
    def __init__(self, chain_id: str) -> None:
        super().__init__(f"layer {chain_id} not found in layer store")
        self.chain_id = chain_id


class LayerInUse(ImageError):
    def __init__(self, chain_id: str, child: str) -> None:
        super().__init__(f"layer {chain_id} is the parent of layer {child}")
        self.chain_id = chain_id
        self.child = child


class InvalidManifest(ImageError, ValueError):
    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"invalid {what}: {reason}")
        self.reason = reason


class NoMatchingPlatform(ImageError, LookupError):
    def __init__(self, platform: str, available: list[str]) -> None:
        listed = ", ".join(available) or "none"
        super().__init__(f"no manifest for platform {platform} (available: {listed})")
        self.platform = platform
        self.available = available


class ImageNotFound(ImageError, LookupError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"image {reference!r} not found")
        self.reference = reference


class RegistryError(ImageError):
    """A registry could not give what a pull needed; the message names the registry."""

    def __init__(self, registry: str, reason: str) -> None:
        super().__init__(f"registry {registry}: {reason}")
        self.registry = registry
        self.reason = reason


class AuthenticationFailed(RegistryError):
    """Credentials missing or refused (HTTP 401/403, or the token service said no)."""


class RegistryNotFound(RegistryError, LookupError):
    """The registry answered 404: no such repository, tag, manifest or blob."""


class RegistryUnavailable(RegistryError):
    """Connection failures or server errors that outlived the retries."""


class PullTimeout(RegistryError):
    """No bytes arrived for the configured progress timeout."""


class PullCancelled(ImageError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"pull of {reference!r} cancelled by the caller")
        self.reference = reference
