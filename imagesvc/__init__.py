"""Images: references, content store (blobs by digest), unpacked layers (by chain ID),
manifests and configs. Kept apart as containerd keeps them; knows nothing of pods."""
