"""Image service: pull by tag, without tag and by digest, status by every kind of reference,
list, removal, and one identifier for one image (upstream image.go,
image_id_consistency.go). Every case has an image of its own (see testimages)."""

from __future__ import annotations

from criapi import api_pb2 as pb
from critest.case import NEEDS_REGISTRY, case, expect, expect_eq, skip
from critest.fixture import RPC_TIMEOUT, Fixture

AREA = "image"
TAGS = [NEEDS_REGISTRY]


def _listed(f: Fixture) -> list[pb.Image]:
    return list(f.img.ListImages(pb.ListImagesRequest(), timeout=RPC_TIMEOUT).images)


def _pull_and_remove(f: Fixture, ref: str, status_ref: str) -> None:
    image_ref = f.pull(ref)
    status = f.image_status(status_ref)
    expect(status is not None, f"ImageStatus({status_ref}) found nothing after pulling {ref}")
    assert status is not None
    expect_eq(status.id, image_ref, "Image.id against PullImageResponse.image_ref")
    f.remove_image(status_ref)
    expect(
        f.image_status(status_ref) is None, f"ImageStatus({status_ref}) still answers after removal"
    )
    expect(status.id not in {i.id for i in _listed(f)}, "ListImages still has the removed image")


@case(
    "pull by tag, then remove",
    area=AREA,
    spec="public image with tag should be pulled and removed [Conformance]",
    tags=TAGS,
)
def pull_tag(f: Fixture) -> None:
    ref = f.env.images.pull_tag.ref
    _pull_and_remove(f, ref, ref)


@case(
    "pull without tag means latest",
    area=AREA,
    spec="public image without tag should be pulled and removed [Conformance]",
    tags=TAGS,
)
def pull_no_tag(f: Fixture) -> None:
    repository = f.env.images.pull_no_tag.repository
    f.pull(repository)
    status = f.image_status(f"{repository}:latest")
    expect(status is not None, "pulling a bare name did not give name:latest")
    assert status is not None
    expect(
        f"{repository}:latest" in status.repo_tags,
        f"repo_tags {list(status.repo_tags)} lack :latest",
    )
    _pull_and_remove(f, repository, repository)


@case(
    "pull by digest, then remove",
    area=AREA,
    spec="public image with digest should be pulled and removed [Conformance]",
    tags=TAGS,
)
def pull_digest(f: Fixture) -> None:
    pushed = f.env.images.pull_digest
    f.pull(pushed.digest_ref)
    status = f.image_status(pushed.digest_ref)
    expect(status is not None, "ImageStatus by digest found nothing")
    assert status is not None
    expect(
        pushed.digest_ref in status.repo_digests,
        f"repo_digests {list(status.repo_digests)} lack {pushed.digest_ref}",
    )
    _pull_and_remove(f, pushed.digest_ref, pushed.digest_ref)


@case(
    "image status fields are set",
    area=AREA,
    spec="image status should support all kinds of references [Conformance]",
    tags=TAGS,
)
def status_fields(f: Fixture) -> None:
    pushed = f.env.images.status_fields
    f.pull(pushed.ref)
    status = f.image_status(pushed.ref)
    assert status is not None
    expect(status.id, "Image.id empty")
    expect(pushed.ref in status.repo_tags, f"repo_tags {list(status.repo_tags)} lack {pushed.ref}")
    expect(
        pushed.digest_ref in status.repo_digests,
        f"repo_digests {list(status.repo_digests)} lack {pushed.digest_ref}",
    )
    expect(status.size > 0, "Image.size is 0")


@case(
    "image status is identical by tag, digest and id",
    area=AREA,
    spec="image status should support all kinds of references [Conformance]",
    tags=TAGS,
)
def status_by_every_reference(f: Fixture) -> None:
    pushed = f.env.images.status_refs
    for ref in pushed.refs:
        f.pull(ref)
    by_tag = f.image_status(pushed.ref)
    assert by_tag is not None
    references = [*pushed.refs, pushed.digest_ref, by_tag.id]
    for ref in references:
        expect_eq(
            f.image_status(ref), by_tag, f"ImageStatus({ref}) against ImageStatus({pushed.ref})"
        )
    expect_eq(
        sorted(by_tag.repo_tags), sorted(pushed.refs), "repo_tags of an image pulled under two tags"
    )


@case(
    "missing image has no status and no error",
    area=AREA,
    spec="image status should support all kinds of references [Conformance]",
    tags=TAGS,
)
def status_missing(f: Fixture) -> None:
    ref = f"{f.env.images.default.repository}:no-such-tag"
    expect(f.image_status(ref) is None, "ImageStatus of an absent image returned an image")


@case(
    "list shows three images",
    area=AREA,
    spec="listImage should get exactly 3 image in the result list [Conformance]",
    tags=TAGS,
)
def list_three(f: Fixture) -> None:
    pushed = f.env.images.list_three
    for image in pushed:
        f.pull(image.ref)
    found = [i for i in _listed(f) if set(i.repo_tags) & {p.ref for p in pushed}]
    expect_eq(len(found), 3, "images in ListImages carrying the three tags")
    expect_eq(len({i.id for i in found}), 3, "distinct ids of three different images")


@case(
    "list shows one image with two tags",
    area=AREA,
    spec="listImage should get exactly 2 repoTags in the result image [Conformance]",
    tags=TAGS,
)
def list_two_tags(f: Fixture) -> None:
    pushed = f.env.images.two_tags
    for ref in pushed.refs:
        f.pull(ref)
    found = [i for i in _listed(f) if set(i.repo_tags) & set(pushed.refs)]
    expect_eq(len(found), 1, "images carrying either tag")
    expect_eq(sorted(found[0].repo_tags), sorted(pushed.refs), "repo_tags")


@case(
    "remove by one tag removes the image and all its tags",
    area=AREA,
    spec="image should be removed by any of its tags",
    tags=TAGS,
)
def remove_by_tag(f: Fixture) -> None:
    pushed = f.env.images.remove_tags
    ids = {f.pull(ref) for ref in pushed.refs}
    expect_eq(len(ids), 1, "image refs of one image pulled under two tags")
    f.remove_image(pushed.refs[0])
    for ref in [*pushed.refs, ids.pop()]:
        expect(f.image_status(ref) is None, f"ImageStatus({ref}) still answers")
    expect(
        not [i for i in _listed(f) if set(i.repo_tags) & set(pushed.refs)],
        "ListImages still lists a tag",
    )


def _container_image_id(f: Fixture, image_ref: str, user_ref: str) -> str:
    """ContainerStatus.image_id of a container created from ``image_ref``; it must agree
    with ListContainers."""
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    config = f.container_config(command=["true"])
    config.image.CopyFrom(pb.ImageSpec(image=image_ref, user_specified_image=user_ref))
    container_id = f.create_container(pod_id, pod_config, config)
    status = f.status(container_id)
    listed = f.rt.ListContainers(
        pb.ListContainersRequest(filter=pb.ContainerFilter(id=container_id)), timeout=RPC_TIMEOUT
    )
    if not status.image_id:
        skip("ContainerStatus.image_id is empty: the runtime predates CRI's image_id field")
    expect_eq(listed.containers[0].image_id, status.image_id, "Container.image_id")
    return status.image_id


@case(
    "one image identifier across pull, status and list",
    area=AREA,
    spec="should return the same image identifier across all APIs [Conformance]",
    tags=TAGS,
)
def id_consistency(f: Fixture) -> None:
    pushed = f.env.images.id_consistency
    image_ref = f.pull(pushed.ref)
    status = f.image_status(pushed.ref)
    assert status is not None
    expect_eq(status.id, image_ref, "Image.id against PullImageResponse.image_ref")
    listed = [i.id for i in _listed(f) if pushed.ref in i.repo_tags]
    expect_eq(listed, [image_ref], "ListImages ids of the image")


@case(
    "containers report the image id that the pull returned",
    area=AREA,
    spec="should return the same image identifier across all APIs [Conformance]",
    tags=TAGS,
)
def container_image_id(f: Fixture) -> None:
    pushed = f.env.images.container_id
    image_ref = f.pull(pushed.ref)
    expect_eq(_container_image_id(f, image_ref, pushed.ref), image_ref, "ContainerStatus.image_id")


@case(
    "same image from two registries has one identifier",
    area=AREA,
    spec="should return the same image identifier when pulled from different registries "
    "[Conformance]",
    tags=TAGS,
)
def two_registries(f: Fixture) -> None:
    mirrored = f.env.images.mirrored
    if mirrored is None:
        skip("only one registry was given (--registry once)")
    first, second = mirrored
    ref1 = f.pull(first.ref)
    ref2 = f.pull(second.ref)
    expect_eq(ref2, ref1, "image_ref of the same image from the second registry")
    for pushed in mirrored:
        status = f.image_status(pushed.ref)
        assert status is not None
        expect_eq(status.id, ref1, f"Image.id by {pushed.ref}")
    found = [i for i in _listed(f) if i.id == ref1]
    expect_eq(len(found), 1, "ListImages entries of the one image")
    expect_eq(sorted(found[0].repo_tags), sorted([first.ref, second.ref]), "repo_tags")
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    container_id = f.run_container(pod_id, pod_config, f.container_config(image=second.ref))
    image_id = f.status(container_id).image_id
    # image_id is new in the CRI (v1.36); a runtime that predates it leaves it empty.
    expect(image_id in ("", ref1), f"ContainerStatus.image_id {image_id!r} is not {ref1!r}")
