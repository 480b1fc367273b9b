"""Training-side data: streaming samplers over dataset roots and plain webdataset shards.

    from wv.train import SamplerConfig, Stream

`SamplerConfig` says what to feed (selection, weighting, curriculum, gates, batch layout);
`Stream` yields one rank's batches epoch after epoch with exact resume (state_dict /
load_state_dict); `Planner` (wv.train.sampling) makes an epoch's plan from metadata alone, which
is what `wv stream` reports. See README "Streaming samplers".
"""

from wv.train.config import SamplerConfig

__all__ = ["SamplerConfig", "Stream", "Planner", "load_table"]


def __getattr__(name):  # torch and webdataset load only when the stream itself is used
    if name == "Stream":
        from wv.train.stream import Stream

        return Stream
    if name == "Planner":
        from wv.train.sampling import Planner

        return Planner
    if name == "load_table":
        from wv.train.table import load_table

        return load_table
    raise AttributeError(name)
