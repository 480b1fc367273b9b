"""wv: curate noisy web-image datasets (WebVision) into scored, streamable webdataset shards."""

__version__ = "0.1.0"
