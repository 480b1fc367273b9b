"""The streaming sampler library: samplers over dataset roots and plain webdataset shards, for `wv train`,
`wv stream` or any training loop.

    from wv.stream import SamplerConfig, Stream

`SamplerConfig` says what to feed (selection, weighting, curriculum, gates, batch layout);
`Stream` yields one rank's batches epoch after epoch with exact resume (state_dict /
load_state_dict); `Planner` (wv.stream.sampling) makes an epoch's plan from metadata alone, which
is what `wv stream` reports (wv.stream.plan_summary). See README "Streaming samplers".
"""

from wv.stream.config import SamplerConfig

__all__ = ["SamplerConfig", "Stream", "Planner", "load_table"]


def __getattr__(name):  # torch and webdataset load only when the stream itself is used
    if name == "Stream":
        from wv.stream.loader import Stream

        return Stream
    if name == "Planner":
        from wv.stream.sampling import Planner

        return Planner
    if name == "load_table":
        from wv.stream.table import load_table

        return load_table
    raise AttributeError(name)
