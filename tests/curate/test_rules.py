"""The drop-rule language: parsing, resolution of columns, types, null handling, what is refused."""

import polars as pl
import pytest

from wv.curate.rules import META_COLUMNS, compile_rules
from wv.errors import WvError

SCHEMAS = {
    "meta": META_COLUMNS,
    "lda": {"similarity": pl.Float32, "topic": pl.Int32},
    "curriculum": {"subset": pl.Int8, "density": pl.Float64},
    "confidence": {"p_label": pl.Float64, "top1": pl.Int32, "similarity": pl.Float64},
    "keywords": {"keywords": pl.List(pl.String)},
    "dup": {"is_duplicate": pl.Boolean},
    "my-score": {"x": pl.Float64},
}

FRAME = pl.DataFrame(
    {
        "lda.similarity": [0.01, 0.20, None, 0.04, 0.90],
        "curriculum.subset": [2, 0, 1, None, 2],
        "curriculum.density": [1.0, 9.0, 4.0, 2.0, 0.5],
        "confidence.p_label": [0.05, 0.9, 0.02, None, 0.5],
        "dup.is_duplicate": [False, True, None, False, False],
        "meta.source": ["google", "flickr", "google", "flickr", "google"],
        "meta.label": [0, 1, 2, 3, 4],
        "my-score.x": [1.0, -2.0, 3.0, -4.0, 5.0],
    },
    schema_overrides={"lda.similarity": pl.Float32, "curriculum.subset": pl.Int8, "meta.label": pl.Int32},
)


def fires(text: str) -> list[bool]:
    rule = compile_rules([text], SCHEMAS)[0]
    return FRAME.select(rule.expression(SCHEMAS)).to_series().to_list()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lda.similarity < 0.05", [True, False, False, True, False]),
        ("lda.similarity <= 0.04", [True, False, False, True, False]),
        ("0.05 > lda.similarity", [True, False, False, True, False]),
        ("curriculum.subset == 2", [True, False, False, False, True]),
        ("curriculum.subset = 2", [True, False, False, False, True]),
        ("curriculum.subset != 2", [False, True, True, False, False]),
        ("subset in (1, 2)", [True, False, True, False, True]),
        ("subset not in (1, 2)", [False, True, False, False, False]),
        ("lda.similarity is null", [False, False, True, False, False]),
        ("p_label is not null and p_label < 0.1", [True, False, True, False, False]),
        ("not lda.similarity < 0.05", [False, True, False, False, True]),
        ("not (lda.similarity >= 0.05)", [True, False, False, True, False]),
        # and binds tighter than or
        ("subset == 0 or subset == 2 and density < 1", [False, True, False, False, True]),
        ("(subset == 0 or subset == 2) and density < 1", [False, False, False, False, True]),
        ("subset == 2 & p_label < 0.1 | source == 'flickr'", [True, True, False, True, False]),
        ('meta.source == "flickr"', [False, True, False, True, False]),
        ("dup.is_duplicate", [False, True, False, False, False]),
        ("!dup.is_duplicate", [True, False, False, True, True]),
        ("is_duplicate == true", [False, True, False, False, False]),
        ("`my-score.x` < -1", [False, True, False, True, False]),
        ("`my-score`.x > 2.5e0", [False, False, True, False, True]),
        ("lda.similarity < curriculum.density", [True, True, False, True, False]),
        ("label >= 3", [False, False, False, True, True]),
    ],
)
def test_rules_evaluate(text, expected):
    assert fires(text) == expected


def test_missing_values_never_fire_unless_asked():
    # row 2 has no lda similarity, row 3 no subset and no p_label
    assert fires("lda.similarity < 1")[2] is False
    assert fires("not lda.similarity < 1")[2] is False
    assert fires("subset not in (5)")[3] is False
    assert fires("lda.similarity is null or curriculum.subset is null") == [False, False, True, True, False]


def test_columns_resolve_unique_names_and_refuse_ambiguous_ones():
    rule = compile_rules(["p_label < 0.1 and subset == 2"], SCHEMAS)[0]
    assert rule.columns == ("confidence.p_label", "curriculum.subset")
    with pytest.raises(WvError, match=r"several scores \(confidence, lda\); write it as confidence.similarity"):
        compile_rules(["similarity < 0.1"], SCHEMAS)
    with pytest.raises(WvError, match="no score has a column 'simlarity'"):
        compile_rules(["simlarity < 0.1"], SCHEMAS)
    with pytest.raises(WvError, match="score 'lda' has no column 'cosine'; its columns: similarity, topic"):
        compile_rules(["lda.cosine < 0.1"], SCHEMAS)
    with pytest.raises(WvError, match="no score named 'ldaa'"):
        compile_rules(["ldaa.similarity < 0.1"], SCHEMAS)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("lda.similarity <", "expected a column name or a value"),
        ("lda.similarity < 0.1 0.2", "expected 'and', 'or' or the end"),
        ("(lda.similarity < 0.1", "expected '\\)'"),
        ("1 < 2", "reads no column"),
        ("lda.similarity < 'low'", "cannot compare lda.similarity \\(number\\) with 'low' \\(string\\)"),
        ("source < 3", "cannot compare meta.source \\(string\\)"),
        ("keywords.keywords == 'dog'", "cannot compare keywords.keywords \\(other\\)"),
        ("subset in ('a')", "holds number values, not 'a'"),
        ("is_duplicate < true", "compare only with == or !="),
        ("lda.similarity", "is not true/false"),
        ("lda.similarity is 3", "expected 'null' after 'is'"),
        ("lda.similarity < 0.1; import os", "cannot read"),
        ("__import__('os').system('true')", "cannot read|expected"),
        ("lda.similarity.__class__ < 1", "cannot read|expected"),
        ("-lda.similarity < 1", "'-' goes only before a number"),
    ],
)
def test_bad_rules_are_one_sentence_errors(text, message):
    with pytest.raises(WvError, match=message):
        compile_rules([text], SCHEMAS)


def test_the_same_rule_twice_is_refused():
    with pytest.raises(WvError, match="twice"):
        compile_rules(["subset == 2", "subset == 2"], SCHEMAS)


@pytest.mark.parametrize(
    "text, ranking",
    [
        ("lda.similarity < 0.05", ("lda.similarity", -1.0, 0.05)),
        ("0.05 > lda.similarity", ("lda.similarity", -1.0, 0.05)),
        ("curriculum.density > 7", ("curriculum.density", 1.0, 7)),
        ("not curriculum.density <= 7", ("curriculum.density", 1.0, 7)),
        ("subset == 2 and p_label < 0.3", ("confidence.p_label", -1.0, 0.3)),
        ("subset == 2", None),
    ],
)
def test_ranking_points_at_the_worse_end(text, ranking):
    """The protection keeps the least bad matched samples: sign * value grows as a sample gets worse."""
    assert compile_rules([text], SCHEMAS)[0].ranking(SCHEMAS) == ranking


def test_thresholds_for_histograms():
    rule = compile_rules(["subset in (1, 2) or lda.similarity < 0.05 and 0.1 <= p_label"], SCHEMAS)[0]
    assert rule.thresholds(SCHEMAS) == {
        "curriculum.subset": [("==", 1), ("==", 2)],
        "lda.similarity": [("<", 0.05)],
        "confidence.p_label": [(">=", 0.1)],
    }
