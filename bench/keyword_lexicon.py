"""The tagger-free keyword lexicon against a real POS tagger, on the same texts, in one run.

NLTK's perceptron tagger (what `wv score keywords` uses when its data is installed) cannot be had
offline; TextBlob ships Pattern's tagger with its lexicon inside the wheel (`pip install textblob`),
so it stands in as the tagger here. Each text goes through
  tagger             Pattern's tags NN*/JJ*, base forms and stop words as wv does
  wordnet-frequency  wv's fallback: each word's commonest part of speech in WordNet's tagged corpus
  wordnet-any        the fallback before it: any word WordNet knows as a noun or an adjective
and the keyword sets are compared per text (mean Jaccard with the tagger's set, and the share of the
tagger's words found / of the lexicon's words the tagger also kept). Also scores each lexicon on the
hand-checked word list of the tests (tests/data/keyword_pos_checked.tsv).

    python bench/keyword_lexicon.py                        # a wv synth set: 20 classes, 60 per class
    python bench/keyword_lexicon.py --classes 50 --per-class 100
"""

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wv.curate import keywords as kw  # noqa: E402
from wv.curate import nltk_data  # noqa: E402
from wv.curate.text import stop_words  # noqa: E402
from wv.shards.build import BuildOptions, build  # noqa: E402
from wv.synth import SynthOptions, write_synth  # noqa: E402

CHECKED = REPO / "tests" / "data" / "keyword_pos_checked.tsv"


def wordnet_any(word: str) -> str | None:
    wordnet = nltk_data.wordnet()
    for pos in ("n", "a"):
        forms = nltk_data.base_forms(wordnet, word, pos)
        if forms:
            return min(forms, key=len)
    return None


def lexicon_words(text: str, rule) -> set[str]:
    stops = stop_words()
    words = (rule(w) for w in kw.WORD.findall((text or "").lower()) if len(w) >= kw.MIN_LENGTH and w not in stops)
    return {w for w in words if w and w not in stops}


def tagger_words(text: str, tagger) -> set[str]:
    stops = stop_words()
    tagged = tagger.tag(text or "") if kw.WORD.search(text or "") else []
    words = [w.lower() for w, tag in tagged if tag.startswith("NN") or tag.startswith("JJ")]
    words = [(wordnet_any(w) or w) for w in words if kw.WORD.fullmatch(w) and len(w) >= kw.MIN_LENGTH and w not in stops]
    return {w for w in words if w not in stops}


def compare(texts: list[str], tagger) -> dict:
    rules = {"wordnet-frequency": kw.lexicon_keyword, "wordnet-any": wordnet_any}
    sums = {name: {"jaccard": 0.0, "found": 0, "kept": 0, "agreed": 0} for name in rules}
    reference_total = 0
    for text in texts:
        reference = tagger_words(text, tagger)
        reference_total += len(reference)
        for name, rule in rules.items():
            words = lexicon_words(text, rule)
            union = reference | words
            sums[name]["jaccard"] += len(reference & words) / len(union) if union else 1.0
            sums[name]["agreed"] += len(reference & words)
            sums[name]["kept"] += len(words)
    return {
        name: {
            "mean_jaccard": round(s["jaccard"] / len(texts), 3),
            "recall_of_tagger_words": round(s["agreed"] / max(reference_total, 1), 3),
            "precision_vs_tagger": round(s["agreed"] / max(s["kept"], 1), 3),
        }
        for name, s in sums.items()
    }


def checked_list(tagger) -> dict:
    rows = [line.rstrip("\n").split("\t") for line in CHECKED.read_text().splitlines() if line and not line.startswith("#")]
    rules = {"wordnet-frequency": kw.lexicon_keyword, "wordnet-any": wordnet_any}
    out = {name: sum((rule(word) or "-") == expected for word, expected, _ in rows) for name, rule in rules.items()}
    # The tagger in the list's own contexts: the word's tag in its example phrase.
    hits = 0
    for word, expected, context in rows:
        phrase = context.rsplit(" (", 1)[0]
        tags = dict((w.lower(), t) for w, t in tagger.tag(phrase))
        nominal = tags.get(word, "").startswith(("NN", "JJ"))
        hits += nominal == (expected != "-")
    out["tagger (in context)"] = hits
    return {name: f"{hits}/{len(rows)}" for name, hits in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=60)
    args = parser.parse_args()
    try:
        from textblob.en.taggers import PatternTagger
    except ImportError:
        sys.exit("this benchmark needs TextBlob's Pattern tagger: pip install textblob")
    if not nltk_data.has_wordnet():
        sys.exit(nltk_data.INSTALL_HINT)
    tagger = PatternTagger()
    with tempfile.TemporaryDirectory() as tmp:
        source, root = Path(tmp) / "src", Path(tmp) / "root"
        write_synth(source, SynthOptions(classes=args.classes, per_class=args.per_class, noise=0.3, val_per_class=0, seed=0))
        build(source, root, BuildOptions(split="train", shard_size=500), workers=1, progress=False)
        texts = pl.concat([pl.read_parquet(p, columns=["text"]) for p in sorted((root / "meta").glob("*.parquet"))])["text"].to_list()
    print(f"{len(texts)} synthetic texts ({args.classes} classes x {args.per_class}), keyword sets vs Pattern's tagger:")
    for name, figures in compare(texts, tagger).items():
        print(f"  {name:18s} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    print(f"hand-checked list ({CHECKED.relative_to(REPO)}), words given the expected part of speech:")
    for name, score in checked_list(tagger).items():
        print(f"  {name:18s} {score}")


if __name__ == "__main__":
    main()
