"""Image references (``[domain/]path[:tag][@digest]``), normalised the way kubelet,
containerd and the Docker CLI do: ``busybox`` is ``docker.io/library/busybox:latest``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagesvc.digest import Digest
from imagesvc.errors import InvalidDigest, InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX_LENGTH = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# A bare 64-hex name is an image ID, which a reference must not be mistaken for.
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class ImageReference:
    """A fully qualified reference; at least one of ``tag`` and ``digest`` is usually set
    (``parse`` adds ``latest`` when neither is given)."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        text = self.string()
        if not _DOMAIN.fullmatch(self.domain):
            raise InvalidReference(text, f"invalid registry domain {self.domain!r}")
        _check_path(text, self.path)
        if len(self.repository) > NAME_MAX_LENGTH:
            raise InvalidReference(
                text, f"repository name must not be longer than {NAME_MAX_LENGTH} characters"
            )
        if self.tag is not None and not _TAG.fullmatch(self.tag):
            raise InvalidReference(text, f"invalid tag {self.tag!r}")

    @classmethod
    def parse(cls, reference: str, *, default_tag: bool = True) -> ImageReference:
        """Parse and normalise; with ``default_tag`` a reference with neither tag nor
        digest gets ``latest``, as ``crictl pull busybox`` expects."""
        return parse_reference(reference, default_tag=default_tag)

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as users type it: ``busybox``, ``user/app``, ``quay.io/x/y``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        return rest if "/" not in rest else self.path

    @property
    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    def string(self) -> str:
        return self.repository + self._suffix()

    def with_tag(self, tag: str | None) -> ImageReference:
        return ImageReference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: Digest | None) -> ImageReference:
        return ImageReference(self.domain, self.path, self.tag, digest)

    def __str__(self) -> str:
        return self.string()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest


def parse_reference(reference: str, *, default_tag: bool = True) -> ImageReference:
    if not reference:
        raise InvalidReference(reference, "reference is empty")
    if reference != reference.strip():
        raise InvalidReference(reference, "leading or trailing whitespace")
    name, at, digest_text = reference.partition("@")
    digest: Digest | None = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as err:
            raise InvalidReference(reference, f"invalid digest: {err.reason}") from None
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(reference, f"invalid tag {tag!r}")
    if not name:
        raise InvalidReference(reference, "repository name is empty")
    if _IMAGE_ID.fullmatch(name):
        raise InvalidReference(
            reference, "a 64-character hexadecimal string is an image ID, not a repository"
        )
    domain, path = _split_domain(name)
    if not _DOMAIN.fullmatch(domain):
        raise InvalidReference(reference, f"invalid registry domain {domain!r}")
    _check_path(reference, path)
    if len(domain) + 1 + len(path) > NAME_MAX_LENGTH:
        raise InvalidReference(
            reference, f"repository name must not be longer than {NAME_MAX_LENGTH} characters"
        )
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return ImageReference(domain, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    # The first component is a registry only if it looks like a host: it has a dot or a
    # port, is "localhost", or has capitals (which repository paths never have).
    first, slash, rest = name.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def _check_path(reference: str, path: str) -> None:
    if _PATH.fullmatch(path):
        return
    if _PATH.fullmatch(path.lower()):
        raise InvalidReference(reference, "repository name must be lowercase")
    raise InvalidReference(reference, f"invalid repository path {path!r}")
