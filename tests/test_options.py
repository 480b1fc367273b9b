"""Each option is declared once: the click options of every command agree with its options dataclass
(default and help), and the README's stated defaults agree with the command line."""

import dataclasses
import re
from pathlib import Path

import click
import pytest

from wv.cli import main
from wv.curate.duplicates_options import DuplicateOptions
from wv.curate.noise_options import NoiseOptions, ProbeOptions
from wv.curate.options import AuditOptions, ConfidenceOptions, CurriculumOptions, DensityOptions, DensityResources, EmbedOptions, KeywordOptions, LdaOptions, LoopOptions, SelectOptions
from wv.curate.relabel_options import RelabelOptions
from wv.options import option_default
from wv.shards.options import BuildOptions
from wv.stream.config import SamplerConfig
from wv.synth_options import SynthOptions
from wv.train.options import EvalOptions, PretrainOptions, TrainOptions

# every command of the tree, with the dataclasses its options fill (none: only plain click options)
DATACLASSES = {
    "wv synth": (SynthOptions,),
    "wv shard build": (BuildOptions,),
    "wv shard verify": (),
    "wv shard info": (),
    "wv shard bake": (),
    "wv score lda": (LdaOptions,),
    "wv score keywords": (KeywordOptions,),
    "wv score density": (DensityOptions, DensityResources),
    "wv score confidence": (ConfidenceOptions, LoopOptions),
    "wv score noise": (NoiseOptions, ProbeOptions),
    "wv score labelissues": (ProbeOptions,),
    "wv score duplicates": (DuplicateOptions,),
    "wv select": (SelectOptions,),
    "wv audit": (AuditOptions,),
    "wv stream": (SamplerConfig,),
    "wv train": (TrainOptions, SamplerConfig),
    "wv pretrain": (PretrainOptions, TrainOptions, SamplerConfig),
    "wv embed": (EmbedOptions, LoopOptions),
    "wv curriculum split": (CurriculumOptions,),
    "wv eval": (EvalOptions,),
    "wv models": (),
    "wv relabel": (RelabelOptions,),
    "wv demo": (),
}
# fields a command line does not offer, or offers in another form
NOT_ON_CLI = {
    ("wv synth", "width"),
    ("wv synth", "height"),  # --image-size WIDTHxHEIGHT
    ("wv synth", "queries_per_class"),
    ("wv synth", "flickr_share"),
    ("wv synth", "empty_text"),
    ("wv synth", "foreign_text"),
    ("wv train", "val_batch_size"),
    *(("wv pretrain", name) for name in ("val_batch_size", "num_classes", "soft_label", "soft_threshold", "backprop_gate", "topic_head", "topic_weight", "topic_loss")),
}
# options whose command line spelling of the default differs from the field's: the command's conversion
CONVERTED = {("wv synth", "version"): lambda value: f"{value}.0"}


def commands(command=main, path=("wv",)):
    """(path, command) for every command that runs (the groups' leaves)."""
    if not isinstance(command, click.Group):
        yield " ".join(path), command
        return
    ctx = click.Context(command)
    for name in command.list_commands(ctx):
        yield from commands(command.get_command(ctx, name), (*path, name))


COMMANDS = dict(commands())
CHECKED = [path for path, classes in DATACLASSES.items() if classes]


def test_every_command_is_listed_with_its_options_dataclasses():
    assert sorted(COMMANDS) == sorted(DATACLASSES)


def options(path: str) -> dict:
    return {p.name: p for p in COMMANDS[path].params if isinstance(p, click.Option)}


@pytest.mark.parametrize("path", CHECKED)
def test_option_defaults_and_help_are_the_dataclass_fields(path):
    on_cli = options(path)
    for cls in DATACLASSES[path]:
        for field in dataclasses.fields(cls):
            if (path, field.name) in NOT_ON_CLI:
                assert field.name not in on_cli, f"{path} --{field.name} is on the command line; take it off NOT_ON_CLI"
                continue
            assert field.name in on_cli, f"{path} has no option for {cls.__name__}.{field.name}"
            option, default = on_cli[field.name], option_default(field)
            if default is dataclasses.MISSING:
                assert option.required, f"{path} {option.opts[0]}: {cls.__name__}.{field.name} has no default"
                continue
            value = CONVERTED.get((path, field.name), lambda v: v)(option.default)
            assert value == default and type(value) is type(default), f"{path} {option.opts[0]}: default {value!r}, {cls.__name__}.{field.name} {default!r}"
            if field.metadata.get("help"):
                assert option.help == field.metadata["help"], f"{path} {option.opts[0]}: help declared twice"


def test_synth_image_size_default_is_the_fields():
    option = options("wv synth")["image_size"]
    assert option.callback(None, option, option.default) == (SynthOptions.width, SynthOptions.height)


def test_a_different_default_fails_the_check():
    """The check above is not vacuous: an option whose default drifted from its field is caught."""

    @click.command()
    @click.option("--epochs", default=20)
    def drifted(epochs):
        pass

    field = {f.name: f for f in dataclasses.fields(TrainOptions)}["epochs"]
    assert drifted.params[0].default != option_default(field)


# -- the README's stated defaults --------------------------------------------------------------------
README = re.sub(r"\s+", " ", (Path(__file__).parents[1] / "README.md").read_text())
# (command, option, the README's words with {} for the default): the README states these defaults
CLAIMS = [
    ("wv shard build", "check", "`--check {}` (default)"),
    ("wv shard build", "quality", "JPEG quality `--quality`, {})"),
    ("wv score lda", "no_below", "`--no-below` ({})"),
    ("wv score lda", "no_above", "`--no-above` ({})"),
    ("wv score lda", "keep_n", "`--keep-n` ({:,})"),
    ("wv score lda", "topics", "`--topics` ({}, as the reference"),
    ("wv score lda", "passes", "`--passes` ({})"),
    ("wv score lda", "iterations", "`--iterations` ({})"),
    ("wv score lda", "chunksize", "`--chunksize` ({})"),
    ("wv score lda", "similarity", "`--similarity {}` (default)"),
    ("wv score lda", "top_topics", "the `--top-topics` ({}) most probable topics"),
    ("wv score lda", "top_classes", "the `--top-classes` ({}) classes"),
    ("wv score keywords", "min_docs", "`--min-docs` documents, {})"),
    ("wv score keywords", "max_doc_share", "`--max-doc-share` of them, {}:"),
    ("wv score density", "dim", "PCA to {} dimensions"),
    ("wv score density", "quantile", "index int({} N^2)"),
    ("wv score density", "exact_max", "`--exact-max` samples ({:,})"),
    ("wv score density", "anchors", "`--anchors` ({:,})"),
    ("wv score density", "memory_gb", "`--memory-gb` ({})"),
    ("wv score duplicates", "threshold", "`--threshold` ({}; see"),
    ("wv score duplicates", "exact_max", "`--exact-max` samples ({:,}; train"),
    ("wv score duplicates", "probes", "`--probes` ({}) nearest"),
    ("wv select", "min_per_class", "`--min-per-class` samples ({})"),
    ("wv select", "max_drop_fraction", "`--max-drop-fraction` of them ({})"),
    ("wv audit", "thumb_size", "(`--thumb-size`, {} px)"),
    ("wv audit", "per_class", "`--per-class` dropped ({})"),
    ("wv audit", "kept_per_class", "`--kept-per-class` kept and protected ({})"),
    ("wv stream", "batch_size", "| `--batch-size` | samples per batch on each rank ({}) |"),
    ("wv stream", "subsets", "default `{}`, written by `wv curriculum split`"),
    ("wv stream", "subset_weights_as", "`--subset-weights-as {}\\|"),
    ("wv stream", "max_repeat", "`--max-repeat {}`"),
    ("wv train", "momentum", "`--momentum` {}"),
    ("wv train", "weight_decay", "`--weight-decay` {}"),
    ("wv train", "lr", "`--lr` {} times"),
    ("wv train", "lr_gamma", "`--lr-gamma` {} every"),
    ("wv train", "lr_step", "`--lr-step` {} epochs"),
    ("wv train", "epochs", "`--epochs` {} (it trained 20)"),
    ("wv train", "batch_size", "`--batch-size` {} per rank (it used 320"),
    ("wv train", "topic_weight", "`--topic-weight` ({})"),
    ("wv train", "lr_schedule", "`--lr-schedule {}` (the default)"),
    ("wv train", "head_lr_mult", "`--head-lr-mult` (default {})"),
    ("wv pretrain", "holdout", "`--holdout` ({})"),
    ("wv pretrain", "grid", "`--grid` tiles ({}: 9 tiles"),
    ("wv pretrain", "permutations", "`--permutations` ({})"),
    ("wv pretrain", "tile_features", "`--tile-features` ({})"),
    ("wv pretrain", "sinkhorn_iters", "`--sinkhorn-iters` ({})"),
    ("wv pretrain", "temperature", "`--temperature` ({})"),
    ("wv relabel", "min_confidence", "`--min-confidence` ({})"),
    ("wv audit", "relabel", "`{}`, the default"),
]


@pytest.mark.parametrize("path, name, words", CLAIMS, ids=[f"{c[0]} {c[1]}" for c in CLAIMS])
def test_readme_states_the_command_line_default(path, name, words):
    default = options(path)[name].default
    stated = words.format(format(default, "g") if isinstance(default, float) else default)
    assert stated in README, f"README.md should say {stated!r} (the default of {path} --{name.replace('_', '-')})"


def test_readme_image_size_is_the_models():
    """--image-size defaults to None: the architecture's own size, which wv.models holds."""
    from wv.models import default_input

    assert f"`--image-size` is the crop ({default_input('resnet50')['size']}; tinycnn {default_input('tinycnn')['size']})" in README


def test_every_parenthesised_readme_default_is_checked():
    """A README sentence "`--option` (NUMBER)" states a default: it must be one of the claims above."""
    checked = {f"--{name.replace('_', '-')}" for _, name, _ in CLAIMS} | {"--image-size"}
    stated = set(re.findall(r"`(--[a-z0-9-]+)`[a-z ,]{0,24}\(\d", README))
    assert stated <= checked, f"README defaults not checked against the command line: {sorted(stated - checked)}"


# -- docs/recipes.md's stated defaults ---------------------------------------------------------------
RECIPES_DOC = re.sub(r"\s+", " ", (Path(__file__).parents[1] / "docs" / "recipes.md").read_text())
# (command, option, the doc's words with {} for the default): where a recipe says "wv's default"
RECIPE_CLAIMS = [
    ("wv train", "momentum", "`--momentum` {}"),
    ("wv train", "weight_decay", "`--weight-decay` {}"),
    ("wv train", "lr", "`--lr` {} times"),
    ("wv train", "lr_gamma", "`--lr-gamma` {} every"),
    ("wv train", "lr_step", "`--lr-step` {} epochs"),
    ("wv train", "epochs", "`--epochs` {},"),
    ("wv train", "batch_size", "`--batch-size` {} per rank"),
    ("wv train", "epochs", "wv's defaults are {} epochs"),
    ("wv train", "batch_size", "and {} per rank"),
    ("wv train", "topic_weight", "loss weight {} is also wv's default (`--topic-weight`)"),
    ("wv train", "topic_loss", "as is `--topic-loss {}`"),
    ("wv train", "soft_threshold", "wv's `--soft-threshold` default is {},"),
    ("wv train", "head_lr_mult", "wv's default `--head-lr-mult` is {} (one rate for all)"),
    ("wv train", "subset_weights_as", "(`--subset-weights-as {}`, wv's default)"),
    ("wv train", "class_balance", "wv's default is `--class-balance {}`"),
    ("wv train", "max_repeat", "at most `--max-repeat` {} times"),
    ("wv score lda", "similarity", "wv's default is cosine (`--similarity {}`)"),
    ("wv score lda", "top_classes", "`--top-classes` {} most similar classes"),
    ("wv select", "max_drop_fraction", "wv's default cap is {}."),
    ("wv score density", "quantile", "`--quantile {}` and"),
    ("wv curriculum split", "subsets", "`--subsets {}` are wv's defaults too"),
    ("wv pretrain", "grid", "(`--grid` {}, wv's default)"),
    ("wv pretrain", "permutations", "of {:,} permutations (wv's default)"),
    ("wv pretrain", "sinkhorn_iters", "`--sinkhorn-iters` {} normalisations"),
    ("wv pretrain", "temperature", "at `--temperature` {}, wv's defaults"),
    ("wv eval", "crops", "wv's default is `--crops {}`"),
    ("wv score keywords", "min_docs", "`--min-docs` {} and"),
    ("wv score keywords", "max_doc_share", "`--max-doc-share` {} are wv's defaults"),
    ("wv relabel", "min_confidence", "`--min-confidence` {} (wv's default)"),
]


@pytest.mark.parametrize("path, name, words", RECIPE_CLAIMS, ids=[f"{c[0]} {c[1]}" for c in RECIPE_CLAIMS])
def test_recipes_doc_states_the_command_line_default(path, name, words):
    default = options(path)[name].default
    stated = words.format(format(default, "g") if isinstance(default, float) else default)
    assert stated in RECIPES_DOC, f"docs/recipes.md should say {stated!r} (the default of {path} --{name.replace('_', '-')})"


def test_recipes_doc_image_sizes_are_the_models():
    from wv.models import default_input

    sizes = {arch: default_input(arch)["size"] for arch in ("resnet50", "inception_v3", "resnest101e")}
    assert "`--image-size` the architecture's own ({resnet50}; {inception_v3} for `inception_v3`, {resnest101e} for `resnest101e`)".format(**sizes) in RECIPES_DOC
    assert f"(`resnest101e`'s own size is {sizes['resnest101e']})" in RECIPES_DOC
