"""Each command option declared once: a dataclass field carries its default, its --help line and how
the command line spells it; `wv.cli.common.options_from` makes the click options from these fields.

    @dataclass(frozen=True)
    class LdaOptions:
        topics: int = opt(500, "LDA topics (the reference used 500; small data wants fewer).")
        similarity: str = opt("cosine", "Sample vs class mean ...", choices=("cosine", "dot"))

The library never imports click: the command-line settings are plain values (`flag` the option's
name when it is not the field's, `choices`, `metavar`, `type` for a None default, `multiple`,
`required`). A field's metadata does not change its dataclass: equality, `asdict` and every
recorded options file stay as they were.
"""

from collections.abc import Callable
from dataclasses import MISSING, Field, field

SPLITS = ("train", "val")  # a dataset root's splits


def opt(default: object = MISSING, help: str | None = None, *, factory: Callable[[], object] = MISSING, **cli: object) -> Field:
    """A dataclass field with its default (or `factory`), its --help line and its click settings."""
    return field(default=default, default_factory=factory, metadata={"help": help, "cli": cli})


def option_default(f: Field) -> object:
    """A field's default value (its factory's product), or MISSING for a required field."""
    return f.default_factory() if f.default_factory is not MISSING else f.default
