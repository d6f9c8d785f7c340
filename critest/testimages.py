"""The suite's own test images: built from busybox-static with ``critest.images`` and pushed
to the loopback registries before any case runs. Each image case gets an image of its own
(a one-file marker layer makes the ids differ), so cases that remove images never take one
that another case, running in parallel, still uses."""

from __future__ import annotations

from dataclasses import dataclass

from critest import images

REPO = "critest"
# The user and group of the groups image, as upstream's "image predefined group" image:
# uid 1000 whose /etc/group lists it in group 50000.
IMAGE_USER_UID = 1000
IMAGE_USER_GID = 1000
IMAGE_GROUP_GID = 50000
PAUSE_COMMAND = ("sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done")


@dataclass(frozen=True)
class Pushed:
    """An image as pushed: its references and the identifiers a runtime must report."""

    repository: str  # host/critest/name, no tag
    tags: tuple[str, ...]
    digest: str  # manifest digest
    id: str  # config digest (Image.id)

    @property
    def ref(self) -> str:
        """The first tag's full reference."""
        return f"{self.repository}:{self.tags[0]}"

    @property
    def refs(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]

    @property
    def digest_ref(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class TestImages:
    default: Pushed  # busybox, ``sh`` by default; every container case runs it
    pause: Pushed  # sleeps forever; usable as a runtime's sandbox image
    groups: Pushed  # user 1000 listed in group 50000 by /etc/group
    pull_tag: Pushed
    pull_no_tag: Pushed  # tag "latest" only, pulled as a bare repository name
    pull_digest: Pushed
    status_fields: Pushed
    status_refs: Pushed  # two tags, for status by tag/digest/id
    id_consistency: Pushed
    list_three: tuple[Pushed, Pushed, Pushed]  # three different images
    two_tags: Pushed  # one image under two tags
    remove_tags: Pushed  # the same, for the removal case
    container_id: Pushed  # for ContainerStatus.image_id
    mirrored: tuple[Pushed, Pushed] | None  # one image in two registries (None: one registry)


def _marker(name: str) -> list[images.Entry]:
    return [images.file(f"etc/critest-{name}", name + "\n")]


def _push(pusher: images.Pusher, name: str, image: images.Image, *tags: str) -> Pushed:
    repository = f"{REPO}/{name}"
    pusher.push_image(repository, image, *tags)
    return Pushed(f"{pusher.host}/{repository}", tags, image.digest, image.id)


def _groups_layer() -> list[images.Entry]:
    passwd = images.PASSWD + f"default-user:x:{IMAGE_USER_UID}:{IMAGE_USER_GID}::/:/bin/sh\n"
    group = (
        images.GROUP
        + f"default-user:x:{IMAGE_USER_GID}:\n"
        + f"group-defined-in-image:x:{IMAGE_GROUP_GID}:default-user\n"
    )
    return [images.file("etc/passwd", passwd), images.file("etc/group", group)]


def build_and_push(registry: str, second_registry: str = "") -> TestImages:
    """Builds every test image and pushes it to ``registry`` (``127.0.0.1:PORT``); the
    mirrored image goes to ``second_registry`` as well when one is given."""
    pusher = images.Pusher(registry)

    def marked(name: str, config: images.RunConfig | None = None) -> images.Image:
        return images.busybox_image(config, [_marker(name)])

    default = _push(pusher, "busybox", images.busybox_image(), "1.0", "latest")
    pause = _push(
        pusher,
        "pause",
        images.busybox_image(images.RunConfig(entrypoint=PAUSE_COMMAND, cmd=None)),
        "1.0",
    )
    groups = _push(
        pusher,
        "groups",
        images.busybox_image(images.RunConfig(user=str(IMAGE_USER_UID)), [_groups_layer()]),
        "1.0",
    )
    list_three = (
        _push(pusher, "list", marked("list-a"), "a"),
        _push(pusher, "list", marked("list-b"), "b"),
        _push(pusher, "list", marked("list-c"), "c"),
    )
    mirrored: tuple[Pushed, Pushed] | None = None
    if second_registry:
        image = marked("mirrored")
        mirrored = (
            _push(pusher, "mirrored", image, "1.0"),
            _push(images.Pusher(second_registry), "mirrored", image, "1.0"),
        )
    return TestImages(
        default=default,
        pause=pause,
        groups=groups,
        pull_tag=_push(pusher, "pull-tag", marked("pull-tag"), "1.0"),
        pull_no_tag=_push(pusher, "pull-no-tag", marked("pull-no-tag"), "latest"),
        pull_digest=_push(pusher, "pull-digest", marked("pull-digest"), "1.0"),
        status_fields=_push(pusher, "status-fields", marked("status-fields"), "1.0"),
        status_refs=_push(pusher, "status-refs", marked("status-refs"), "1.0", "2.0"),
        id_consistency=_push(pusher, "id-consistency", marked("id-consistency"), "1.0"),
        list_three=list_three,
        two_tags=_push(pusher, "two-tags", marked("two-tags"), "1", "2"),
        remove_tags=_push(pusher, "remove-tags", marked("remove-tags"), "1", "2"),
        container_id=_push(pusher, "container-id", marked("container-id"), "1.0"),
        mirrored=mirrored,
    )
