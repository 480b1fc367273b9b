"""Make wv/data/webvision1_class_words.txt: real English words per WebVision 1.0 class, from WordNet 3.0.

For each synset of synsets.txt: its lemmas, the words of its gloss and examples, and the lemmas of
its hypernyms (two levels), hyponyms and part meronyms, kept when WordNet knows them as nouns or
adjectives. `wv synth` draws each class's web text from these words, so that the synthetic text has
real nouns and adjectives for keyword extraction and topic models to work on.

Run once (needs Debian's wordnet-base and wordnet-sense-index: /usr/share/wordnet):
    python tools/make_class_words.py /usr/share/wordnet wv/data/webvision1_class_words.txt
WordNet 3.0 license: Princeton University, see https://wordnet.princeton.edu/license-and-commercial-use
"""

import re
import shutil
import sys
import tempfile
from pathlib import Path

import nltk
from nltk.corpus.reader.wordnet import WordNetCorpusReader

LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
LEX_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
STOP = set("the and for with that from which this are was has have its into used being any other some such one two often very than more most also usually especially".split())
MAX_WORDS = 40


def open_wordnet(folder: str) -> WordNetCorpusReader:
    """NLTK's reader over Debian's WordNet files plus the lexnames file that Debian lacks."""
    data = Path(tempfile.mkdtemp())
    corpus = data / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    for f in Path(folder).iterdir():
        if f.is_file():
            shutil.copy(f, corpus / f.name)
    (corpus / "lexnames").write_text("".join(f"{i:02d}\t{name}\t{LEX_POS[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)))
    nltk.data.path.append(str(data))  # NLTK reads corpora only under its data path
    return WordNetCorpusReader(str(corpus), None)


def class_words(wn, synset) -> list[str]:
    related = [synset] + synset.hypernyms() + [h2 for h in synset.hypernyms() for h2 in h.hypernyms()]
    related += synset.hyponyms()[:8] + synset.part_meronyms()[:8]
    text = [synset.definition()] + synset.examples() + [lemma.replace("_", " ") for s in related for lemma in s.lemma_names()]
    words = []
    for word in re.findall(r"[a-z]+", " ".join(text).lower()):
        if len(word) < 3 or word in STOP or word in words:
            continue
        if wn.synsets(word, pos="n") or wn.synsets(word, pos="a"):
            words.append(word)
    return words[:MAX_WORDS]


def main(wordnet_dir: str, out: str) -> None:
    wn = open_wordnet(wordnet_dir)
    synsets = Path(__file__).resolve().parents[1] / "wv" / "data" / "webvision1_synsets.txt"
    lines = []
    for line in synsets.read_text().splitlines():
        wnid = line.split()[0]
        words = class_words(wn, wn.synset_from_pos_and_offset(wnid[0], int(wnid[1:])))
        lines.append(f"{wnid}\t{' '.join(words)}\n")
    Path(out).write_text("".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:3])
