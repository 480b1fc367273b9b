"""WebVision -> webdataset shards: reading the source layout, building, verifying, reading back."""
