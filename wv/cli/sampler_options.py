"""The sampler option group shared by `wv stream` and `wv train`, made from SamplerConfig's fields.

@click.command()
@sampler_options
def train(..., **options):
    config = sampler_config(options)   # pops the sampler's options, returns a SamplerConfig
"""

from dataclasses import fields

from wv.cli.common import options_from
from wv.stream.config import SamplerConfig

FIELDS = tuple(f.name for f in fields(SamplerConfig))
# --seed last in --help, after the options that say what is drawn
sampler_options = options_from(SamplerConfig, *(name for name in FIELDS if name != "seed"), "seed")


def sampler_config(options: dict) -> SamplerConfig:
    """Pop the sampler's options out of a command's keyword arguments; return the SamplerConfig."""
    return SamplerConfig(**{name: options.pop(name) for name in FIELDS})
