"""gRPC adapter of runtime.v1.ImageService: converts messages and delegates to
imagesvc's ImageManager; errors become status codes in cri/errors.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import grpc

from cri.message_cache import MessageCache
from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from imagesvc.auth import Credentials
from imagesvc.manager import ImageManager
from imagesvc.store import ImageRecord

# Images per StreamImages message: well under the 16 MiB message limit even for images
# with many names.
_STREAM_BATCH = 100


class ImageService(pb_grpc.ImageServiceServicer):
    def __init__(self, images: ImageManager) -> None:
        self._images = images
        # kubelet asks ImageStatus of every container's image before each start.
        self._messages: MessageCache[ImageRecord, pb.Image] = MessageCache()
        # ImageStatus's whole (non-verbose) answer, returned as it is: no copy per call.
        self._statuses: MessageCache[ImageRecord, pb.ImageStatusResponse] = MessageCache()

    def _image(self, record: ImageRecord) -> pb.Image:
        """Read-only: the message is shared with later calls."""
        return self._messages.get(record.id, record, lambda: _image(record))

    def _status(self, record: ImageRecord) -> pb.ImageStatusResponse:
        """Read-only: the message is shared with later calls."""
        return self._statuses.get(
            record.id, record, lambda: pb.ImageStatusResponse(image=self._image(record))
        )

    def PullImage(
        self, request: pb.PullImageRequest, context: grpc.ServicerContext
    ) -> pb.PullImageResponse:
        auth = request.auth
        credentials = Credentials.from_auth_config(
            username=auth.username,
            password=auth.password,
            auth=auth.auth,
            identity_token=auth.identity_token,
            registry_token=auth.registry_token,
        )
        # A caller that gives up (deadline, cancel) stops the pull instead of leaving it
        # running unobserved.
        cancel = threading.Event()
        context.add_callback(cancel.set)
        record = self._images.pull(
            request.image.image,
            credentials,
            dict(request.image.annotations),
            cancel,
        )
        # kubelet asks ImageStatus of the image as soon as the pull returns, and that call
        # meets a gRPC path gone cold during the pull: its answer is built here, not then.
        self._status(record)
        return pb.PullImageResponse(image_ref=str(record.id))

    def ImageStatus(
        self, request: pb.ImageStatusRequest, context: grpc.ServicerContext
    ) -> pb.ImageStatusResponse:
        record = self._images.find(request.image.image)
        if record is None:
            return pb.ImageStatusResponse()
        if request.verbose:
            info = {"info": json.dumps(self._images.verbose_info(record))}
            return pb.ImageStatusResponse(image=self._image(record), info=info)
        return self._status(record)

    def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.ServicerContext
    ) -> pb.ListImagesResponse:
        records = self._images.list_images(request.filter.image.image)
        return pb.ListImagesResponse(images=[self._image(r) for r in records])

    def StreamImages(
        self, request: pb.StreamImagesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamImagesResponse]:
        records = self._images.list_images(request.filter.image.image)
        for start in range(0, len(records), _STREAM_BATCH):
            batch = records[start : start + _STREAM_BATCH]
            yield pb.StreamImagesResponse(images=[self._image(r) for r in batch])

    def RemoveImage(
        self, request: pb.RemoveImageRequest, context: grpc.ServicerContext
    ) -> pb.RemoveImageResponse:
        self._images.remove(request.image.image)
        return pb.RemoveImageResponse()

    def ImageFsInfo(
        self, request: pb.ImageFsInfoRequest, context: grpc.ServicerContext
    ) -> pb.ImageFsInfoResponse:
        usage = self._images.usage()
        filesystem = pb.FilesystemUsage(
            timestamp=usage.timestamp_ns,
            fs_id=pb.FilesystemIdentifier(mountpoint=usage.mountpoint),
            used_bytes=pb.UInt64Value(value=usage.used_bytes),
            inodes_used=pb.UInt64Value(value=usage.inodes_used),
        )
        # Images and writable layers both live under root_dir. kubelet compares the two
        # mountpoints to decide whether the image filesystem is split from the container
        # one, so the same entry in both lists says "not split", as CRI-O answers.
        return pb.ImageFsInfoResponse(
            image_filesystems=[filesystem], container_filesystems=[filesystem]
        )


def _image(record: ImageRecord) -> pb.Image:
    uid, username = record.uid_and_username()
    return pb.Image(
        id=str(record.id),
        repo_tags=list(record.repo_tags),
        repo_digests=list(record.repo_digests),
        size=record.size,
        uid=pb.Int64Value(value=uid) if uid is not None else None,
        username=username,
        spec=pb.ImageSpec(image=str(record.id), annotations=dict(record.annotations)),
        pinned=record.pinned,
    )
