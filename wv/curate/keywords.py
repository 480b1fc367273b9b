"""`wv score keywords`: nouns and adjectives of each image's web text, over a dataset-wide vocabulary.

As in the reference entry: NLTK finds the nouns and adjectives; a vocabulary over the whole split
keeps the words seen in at least `min_docs` documents and in at most `max_doc_share` of them (the
most common words, such as "photo" or "new", say nothing about the image; the rarest are typos and
noise); each image keeps its words that are in the vocabulary (the reference: about 35k keywords,
about 5 per image, on WebVision 1.0).

Part of speech: NLTK's perceptron tagger when its data is installed (nouns NN*, adjectives JJ*, in
context), else WordNet through NLTK's WordNet reader: a word whose commonest use in WordNet's
sense-tagged corpus is as a noun or an adjective, in its base form ("dogs" -> "dog"; see lexicon_keyword). See wv.curate.nltk_data for where the data comes from.

Two passes per shard, in parallel: count each word's documents; then write the sidecar
ROOT/scores/keywords/{shard}.parquet (__key__, keywords list[str], count). The vocabulary is saved
under ROOT/models/keywords/ (vocabulary.parquet: word, docs; keywords.json: options and figures), so
another split is scored with it (`vocabulary=`) without recounting.
"""

import functools
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import polars as pl
from tqdm import tqdm

from wv.atomic import write_json, write_parquet
from wv.curate import nltk_data
from wv.curate.options import KeywordOptions
from wv.curate.text import stop_words
from wv.errors import WvError
from wv.parallel import Workers
from wv.progress import bar_options
from wv.shards import sidecars
from wv.shards.lock import writing
from wv.shards.root import Root
from wv.shards.runrecord import refuse_changed

NAME = "keywords"
COMMAND = "score keywords"
VOCABULARY_FILE, INFO_FILE = "vocabulary.parquet", "keywords.json"
MIN_LENGTH = 3
WORD = re.compile(r"[A-Za-z]+")
NOUN_TAGS, ADJECTIVE_TAGS = ("NN", "NNS", "NNP", "NNPS"), ("JJ", "JJR", "JJS")
VERB_INFLECTIONS = 4  # base, -s, -ed, -ing: an inflected form takes a share of its verb's tagged uses
PRUNE_AT = 2_000_000  # distinct words kept while merging shard counts (the tagger path has no lexicon bound)
SCHEMA = {"__key__": pl.String, "keywords": pl.List(pl.String), "count": pl.Int32}


# -- nouns and adjectives of one text ------------------------------------------------------------------
@functools.lru_cache(maxsize=1_000_000)
def lexicon_keyword(word: str) -> str | None:
    """A lowercase word's base form when its commonest use is as a noun or an adjective, else None.

    Without a tagger there is no context, so each word gets the part of speech WordNet's sense-tagged
    corpus uses it as most often: "dogs" -> "dog", "white" -> "white", but "eating" (the verb "eat") and
    "quickly" (an adverb) -> None. A verb's count is shared among its inflections (eat, eats, ate,
    eating), so an inflected form is weighed against a quarter of it: "building" and "painting" stay
    nouns, "running" and "swimming" are verbs. Words the corpus never tagged keep WordNet's noun or
    adjective entry (most web words: "shark" 1, "kalomi" unknown).
    """
    wordnet = nltk_data.wordnet()
    nominal = {pos: nltk_data.base_forms(wordnet, word, pos) for pos in ("n", "a")}
    if not nominal["n"] and not nominal["a"]:
        return None
    nominal_uses = sum(nltk_data.tagged_count(wordnet, form, pos) for pos, forms in nominal.items() for form in forms)
    if nominal_uses < other_uses(wordnet, word):
        return None
    forms = nominal["n"] or nominal["a"]
    return min(forms, key=len)  # the shortest form, as NLTK's WordNetLemmatizer picks: "waters" -> "water"


def other_uses(wordnet, word: str) -> float:
    """How often WordNet's tagged corpus uses `word` as a verb (inflections sharing the count) or an adverb."""
    verbs = nltk_data.base_forms(wordnet, word, "v")
    verb_uses = sum(nltk_data.tagged_count(wordnet, form, "v") / (1 if form == word else VERB_INFLECTIONS) for form in verbs)
    adverb_uses = sum(nltk_data.tagged_count(wordnet, form, "r") for form in nltk_data.base_forms(wordnet, word, "r"))
    return max(verb_uses, adverb_uses)


def candidate_words(text: str | None, lexicon: str) -> list[str]:
    """The nouns and adjectives of a text, lowercase, base form, stop and web words removed, unique in order."""
    stops = stop_words()
    if lexicon == nltk_data.TAGGER:
        import nltk

        tokens = WORD.findall(text or "")
        words = [word.lower() for word, tag in nltk.pos_tag(tokens) if tag in NOUN_TAGS or tag in ADJECTIVE_TAGS] if tokens else []
        wordnet = nltk_data.wordnet()
        words = [(lexicon_keyword(w) or w) if wordnet is not None else w for w in words]
    else:
        words = [lexicon_keyword(w) for w in WORD.findall((text or "").lower()) if len(w) >= MIN_LENGTH and w not in stops]
    return list(dict.fromkeys(w for w in words if w and len(w) >= MIN_LENGTH and w not in stops))


# -- pass 1: document counts ----------------------------------------------------------------------------
def count_task(job) -> tuple[str, Counter, int]:
    root, shard, lexicon = job
    texts = pl.read_parquet(Root(root).meta_path(shard), columns=["text"])["text"]
    counts = Counter()
    for text in texts:
        counts.update(candidate_words(text, lexicon))
    return shard, counts, len(texts)


def build_vocabulary(root: Root, options: KeywordOptions, lexicon: str, names: list[str], pool: Workers, progress: bool) -> pl.DataFrame:
    counts, documents = Counter(), 0
    jobs = [(str(root.path), name, lexicon) for name in names]
    for _, shard_counts, docs in tqdm(pool.map(count_task, jobs), total=len(jobs), desc="keywords count", unit="shard", **bar_options(progress)):
        counts.update(shard_counts)
        documents += docs
        if len(counts) > PRUNE_AT:
            counts = Counter(dict(counts.most_common(PRUNE_AT)))
    table = pl.DataFrame({"word": list(counts), "docs": list(counts.values())}, schema={"word": pl.String, "docs": pl.Int64})
    kept = table.filter((pl.col("docs") >= options.min_docs) & (pl.col("docs") <= options.max_doc_share * documents))
    kept = kept.sort(["docs", "word"], descending=[True, False])
    if options.max_words is not None:
        kept = kept.head(options.max_words)
    common = table.filter(pl.col("docs") > options.max_doc_share * documents).sort(["docs", "word"], descending=[True, False])
    return kept, {
        "documents": documents,
        "candidates": table.height,
        "dropped_common": common.height,
        "dropped_rare": table.filter(pl.col("docs") < options.min_docs).height,
        "most_common_dropped": common["word"].head(20).to_list(),
    }


# -- pass 2: each sample's keywords ------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def load_vocabulary(folder: str, vocabulary_id: str) -> frozenset:
    return frozenset(pl.read_parquet(Path(folder) / VOCABULARY_FILE, columns=["word"])["word"])


def keywords_task(job) -> tuple[str, int, int]:
    root, shard, lexicon, folder, vocabulary_id = job
    root = Root(root)
    vocabulary = load_vocabulary(folder, vocabulary_id)
    frame = pl.read_parquet(root.meta_path(shard), columns=["__key__", "text"])
    keywords = [[w for w in candidate_words(text, lexicon) if w in vocabulary] for text in frame["text"]]
    out = pl.DataFrame({"__key__": frame["__key__"], "keywords": keywords, "count": [len(k) for k in keywords]}, schema=SCHEMA)
    sidecars.write_scores(root, NAME, shard, out)
    return shard, frame.height, int(out["count"].sum())


# -- the entry point ---------------------------------------------------------------------------------
def score_keywords(
    root: str | Path,
    options: KeywordOptions = KeywordOptions(),
    vocabulary: str | Path | None = None,
    workers: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    options.validate()
    started = time.perf_counter()
    root = Root(root)
    names = root.shard_names(options.split)
    if not names:
        raise WvError(f"{root.path} has no {options.split} shards")
    lexicon = nltk_data.require_lexicon()
    with writing(root, COMMAND), Workers(workers, executor, ray_address) as pool:
        folder, info, built = prepare_vocabulary(root, options, lexicon, vocabulary, names, pool, overwrite, progress)
        if info["lexicon"] == nltk_data.TAGGER and lexicon != nltk_data.TAGGER:
            raise WvError(f"the vocabulary at {folder} was made with NLTK's POS tagger, which is not installed here; run `python -m nltk.downloader averaged_perceptron_tagger_eng`")
        run = {"vocabulary": info["vocabulary_id"], "lexicon": info["lexicon"]}
        todo = set(sidecars.begin_run(root, "scores", NAME, run, overwrite, options.split, command=COMMAND))
        jobs = [(str(root.path), name, info["lexicon"], str(folder), info["vocabulary_id"]) for name in names if name in todo]
        for _ in tqdm(pool.map(keywords_task, jobs), total=len(jobs), desc=f"keywords {options.split}", unit="shard", **bar_options(progress)):
            pass
    stats = (
        sidecars.read_scores(root, NAME, names, columns=["count"])
        .select(pl.len().alias("samples"), pl.col("count").mean().alias("mean"), (pl.col("count") == 0).sum().alias("none"))
        .collect()
        .row(0, named=True)
    )
    return {
        "split": options.split,
        "samples": stats["samples"],
        "scored": stats["samples"] - stats["none"],
        "skipped": stats["none"],
        "keywords_per_image": round(stats["mean"] or 0.0, 3),
        "vocabulary": info["words"],
        "lexicon": info["lexicon"],
        "vocabulary_built": built,
        "dropped_common": info["dropped_common"],
        "dropped_rare": info["dropped_rare"],
        "most_common_dropped": info["most_common_dropped"],
        "shards_written": len(jobs),
        "shards_skipped": len(names) - len(jobs),
        "seconds": round(time.perf_counter() - started, 3),
        "paths": {"scores": str(root.path / "scores" / NAME), "vocabulary": str(Path(folder) / VOCABULARY_FILE)},
    }


def prepare_vocabulary(root: Root, options: KeywordOptions, lexicon: str, vocabulary, names, pool, overwrite: bool, progress: bool):
    """-> (folder, its keywords.json, whether it was built now): the given vocabulary, the root's, or a new one."""
    if vocabulary is not None:
        return Path(vocabulary), read_info(Path(vocabulary)), False
    folder = root.model_dir(NAME)
    wanted = {**asdict(options), "lexicon": lexicon}
    if (folder / INFO_FILE).is_file() and not overwrite:
        info = read_info(folder)
        hint = f"; to score {options.split} with the vocabulary of {info['options']['split']}, pass --vocabulary {folder}" if info["options"].get("split") != options.split else ""
        refuse_changed(f"the vocabulary at {folder}", info["options"], wanted, f"pass --overwrite to rebuild it{hint}")
        return folder, info, False
    (folder / INFO_FILE).unlink(missing_ok=True)  # until the new vocabulary is complete, there is none
    table, figures = build_vocabulary(root, options, lexicon, names, pool, progress)
    if table.height == 0:
        raise WvError(
            f"no noun or adjective is in at least --min-docs {options.min_docs} and at most --max-doc-share {options.max_doc_share} of the {figures['documents']} documents; loosen the thresholds"
        )
    vocabulary_id = hashlib.sha256("\n".join(table["word"]).encode()).hexdigest()[:16]
    info = {"options": wanted, "lexicon": lexicon, "vocabulary_id": vocabulary_id, "words": table.height, **figures}
    write_parquet(folder / VOCABULARY_FILE, table)
    write_json(folder / INFO_FILE, info)  # written last: its presence means the vocabulary is complete
    return folder, info, True


def read_info(folder: Path) -> dict:
    path = folder / INFO_FILE
    if not path.is_file() or not (folder / VOCABULARY_FILE).is_file():
        raise WvError(f"{folder} holds no keyword vocabulary; make one with `wv score keywords ROOT`")
    return json.loads(path.read_text())
