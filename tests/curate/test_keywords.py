"""`wv score keywords`: nouns and adjectives through NLTK's real WordNet reader (Debian's files laid
out for NLTK), the dataset vocabulary, sidecars joined back to their samples, resume, the POS-tagger
path, and the one-sentence error when NLTK has no data.

The synthetic text (wv synth) draws each class's words from WordNet (the class's synset and its
neighbours), padded with made-up words such as "kalomi"; shared web words ("photo", "great") are in
every class.
"""

import json
import shutil
from importlib import resources
from pathlib import Path

import nltk
import polars as pl
import pytest

from wv.curate import keywords as kw
from wv.curate import nltk_data
from wv.shards import sidecars
from wv.shards.root import Root
from wv.synth import SynthOptions, class_styles

REAL_DATA = Path(__file__).resolve().parents[1] / "data"

OPTIONS = ["--min-docs", "3", "--max-doc-share", "0.2"]


@pytest.fixture(scope="module")
def keyword_root(built_root, tmp_path_factory):
    root = shutil.copytree(built_root, tmp_path_factory.mktemp("keywords") / "root")
    figures = kw.score_keywords(root, kw.KeywordOptions(min_docs=3, max_doc_share=0.2), workers=2, progress=False)
    return root, figures


def class_words() -> dict:
    text = resources.files("wv").joinpath("data", "webvision1_class_words.txt").read_text()
    return {synset: set(words.split()) for synset, words in (line.split("\t") for line in text.splitlines())}


def scored(root, synth) -> pl.DataFrame:
    root = Root(root)
    frame = sidecars.read_scores(root, kw.NAME, split="train").collect()
    manifest = root.manifest("train").select("__key__", "label", "meta").collect()
    truth = pl.read_parquet(synth / "ground_truth.parquet").select("__key__", "noise", "text_kind")
    return frame.join(manifest, on="__key__").join(truth, on="__key__")


def test_wordnet_reader_over_debian_files():
    if nltk_data.debian_wordnet_dir() is None:
        pytest.skip("Debian's wordnet-base is not installed (make test installs it)")
    wordnet = nltk_data.wordnet()
    assert wordnet is not None and nltk_data.require_lexicon() in (nltk_data.WORDNET_FREQUENCY, nltk_data.TAGGER)
    assert kw.lexicon_keyword("dogs") == "dog" and kw.lexicon_keyword("waters") == "water"
    assert kw.lexicon_keyword("wooden") == "wooden" and kw.lexicon_keyword("kalomi") is None


def test_layout_is_complete_and_idempotent(tmp_path):
    if nltk_data.debian_wordnet_dir() is None:
        pytest.skip("Debian's wordnet-base is not installed")
    corpus = nltk_data.lay_out_wordnet(nltk_data.debian_wordnet_dir(), tmp_path / "data")
    lexnames = (corpus / "lexnames").read_text().splitlines()
    assert lexnames[0] == "00\tadj.all\t3" and lexnames[5] == "05\tnoun.animal\t1" and len(lexnames) == 45
    assert (corpus / "data.noun").stat().st_size == (nltk_data.debian_wordnet_dir() / "data.noun").stat().st_size
    assert nltk_data.lay_out_wordnet(nltk_data.debian_wordnet_dir(), tmp_path / "data") == corpus
    assert sorted(p.name for p in (tmp_path / "data" / "corpora").iterdir()) == ["wordnet"]  # no staging folder left


def test_candidates_are_nouns_and_adjectives_in_base_form():
    lexicon = nltk_data.WORDNET_FREQUENCY
    words = kw.candidate_words("Great white SHARKS swimming quickly in the warm waters of flickr, www.example.com 2012", lexicon)
    # Without a tagger there is no context: "swimming" is a noun in WordNet (the sport) but used as the verb
    # "swim" far more often, so it goes, as "quickly" (an adverb) does.
    assert words == ["great", "white", "shark", "warm", "water", "example"]
    assert kw.candidate_words("", lexicon) == [] and kw.candidate_words(None, lexicon) == []


def test_tagger_free_lexicon_agrees_with_the_hand_checked_list():
    """tests/data/keyword_pos_checked.tsv: 83 words of web-image text with the part of speech a tagger gives
    them in a typical phrase. The commonest-use rule must agree on most, and clearly more than WordNet's
    plain "is it a noun or an adjective at all" check, which keeps every gerund ("eating", "running")."""
    if not nltk_data.has_wordnet():
        pytest.skip("no WordNet here (make test installs Debian's wordnet-base)")
    rows = [line.split("\t") for line in (REAL_DATA / "keyword_pos_checked.tsv").read_text().splitlines() if line and not line.startswith("#")]
    wordnet = nltk_data.wordnet()

    def any_noun_or_adjective(word):
        forms = nltk_data.base_forms(wordnet, word, "n") or nltk_data.base_forms(wordnet, word, "a")
        return min(forms, key=len) if forms else None

    agree = sum((kw.lexicon_keyword(word) or "-") == expected for word, expected, _ in rows)
    plain = sum((any_noun_or_adjective(word) or "-") == expected for word, expected, _ in rows)
    assert len(rows) == 83 and agree >= 0.88 * len(rows) and agree >= plain + 10
    assert kw.lexicon_keyword("eating") is None and kw.lexicon_keyword("building") == "building"


def test_keywords_join_back_and_come_from_the_class(keyword_root, synth_v1):
    root, figures = keyword_root
    for shard in Root(root).shard_names("train"):
        assert pl.read_parquet(Root(root).score_path(kw.NAME, shard))["__key__"].equals(sidecars.shard_keys(Root(root), shard))
    frame = scored(root, synth_v1)
    synsets = [c["synset"] for c in Root(root).classes()]
    own = class_words()
    clean = frame.filter((pl.col("noise") == "clean") & (pl.col("text_kind") == "web") & (pl.col("meta") == "ok"))
    share = [sum(w in own[synsets[label]] for w in words) / len(words) for words, label in zip(clean["keywords"].to_list(), clean["label"].to_list()) if words]
    assert len(share) >= 0.9 * clean.height and sum(share) / len(share) >= 0.6
    padding = {w for style in class_styles(SynthOptions(classes=6)) for w in style.words if w not in own.get(style.synset, set())}
    made_up = {w for w in padding if not nltk_data.wordnet().synsets(w)}  # a few syllable words are real ("visa")
    assert made_up and not made_up & {w for words in frame["keywords"].to_list() for w in words}
    assert frame.filter(pl.col("text_kind").is_in(["empty", "foreign"]))["count"].max() == 0
    assert (frame["count"] == frame["keywords"].list.len()).all()
    assert 2 <= figures["keywords_per_image"] <= 15 and figures["samples"] == frame.height


def test_vocabulary_drops_common_and_rare_words(keyword_root):
    root, figures = keyword_root
    folder = Root(root).model_dir(kw.NAME)
    vocabulary = pl.read_parquet(folder / kw.VOCABULARY_FILE)
    info = json.loads((folder / kw.INFO_FILE).read_text())
    documents = info["documents"]
    assert vocabulary.height == figures["vocabulary"] == info["words"] > 20
    assert vocabulary["docs"].min() >= 3 and vocabulary["docs"].max() <= 0.2 * documents
    assert {"great", "new", "beautiful"} <= set(info["most_common_dropped"]) and not {"great", "new"} & set(vocabulary["word"])
    assert figures["dropped_rare"] > 0 and figures["lexicon"] in (nltk_data.WORDNET_FREQUENCY, nltk_data.TAGGER)


def test_rerun_resumes_refuses_other_options_and_scores_val_with_the_vocabulary(keyword_root, tmp_path, wv_cli, last_json):
    root = shutil.copytree(keyword_root[0], tmp_path / "root")
    shard = Root(root).shard_names("train")[2]
    before = pl.read_parquet(Root(root).score_path(kw.NAME, shard))
    Root(root).score_path(kw.NAME, shard).unlink()
    result = wv_cli("score", "keywords", root, *OPTIONS, "--workers", "1", "--json")
    figures = last_json(result.stdout)
    assert result.exit_code == 0 and figures["shards_written"] == 1 and not figures["vocabulary_built"]
    assert pl.read_parquet(Root(root).score_path(kw.NAME, shard)).equals(before)
    result = wv_cli("score", "keywords", root, "--min-docs", "4", "--max-doc-share", "0.2")
    assert result.exit_code == 2 and "min_docs" in result.stderr and "--overwrite" in result.stderr
    result = wv_cli("score", "keywords", root, "--split", "val", *OPTIONS)
    assert result.exit_code == 2 and "--vocabulary" in result.stderr
    result = wv_cli("score", "keywords", root, "--split", "val", "--vocabulary", Root(root).model_dir(kw.NAME), "--json")
    assert result.exit_code == 0 and last_json(result.stdout)["samples"] == 24  # val has no web text: no keywords, no crash


def test_missing_nltk_data_is_one_sentence(built_root, tmp_path, wv_cli, monkeypatch):
    monkeypatch.setattr(nltk_data, "has_nltk_resource", lambda name: False)
    monkeypatch.setenv("WV_WORDNET_DIR", str(tmp_path / "nowhere"))
    nltk_data.wordnet.cache_clear()
    try:
        result = wv_cli("score", "keywords", built_root)
    finally:
        nltk_data.wordnet.cache_clear()
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "python -m nltk.downloader wordnet averaged_perceptron_tagger_eng" in message
    assert "apt install wordnet-base wordnet-sense-index" in message


def test_tagger_path(tmp_path, monkeypatch):
    """With NLTK's perceptron tagger installed, nouns and adjectives come from the tagger (a tiny one here)."""
    from nltk.tag import _get_tagger
    from nltk.tag.perceptron import PerceptronTagger

    sentences = [
        [("the", "DT"), ("red", "JJ"), ("fox", "NN"), ("runs", "VBZ"), ("quickly", "RB")],
        [("a", "DT"), ("small", "JJ"), ("dog", "NN"), ("sleeps", "VBZ")],
        [("green", "JJ"), ("trees", "NNS"), ("grow", "VBP"), ("slowly", "RB")],
    ] * 5
    tagger = PerceptronTagger(load=False)
    tagger.train(sentences, nr_iter=5)
    folder = tmp_path / "nltk_data" / "taggers" / "averaged_perceptron_tagger_eng"
    folder.mkdir(parents=True)
    for param, name in zip(tagger.encode_json_obj(), tagger.param_files("eng")):
        (folder / name).write_text(json.dumps(param))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data"), *nltk.data.path])
    _get_tagger.cache_clear()
    try:
        assert nltk_data.has_tagger() and nltk_data.require_lexicon() == "tagger"
        words = kw.candidate_words("The red fox runs quickly", "tagger")
    finally:
        _get_tagger.cache_clear()
    assert words == ["red", "fox"]


def test_help_has_an_example(wv_cli):
    result = wv_cli("score", "keywords", "--help")
    assert result.exit_code == 0 and "Example:" in result.output
