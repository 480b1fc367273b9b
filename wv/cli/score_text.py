"""`wv score lda` and `wv score keywords`: text scores (see wv/curate/lda.py, keywords.py)."""

import click

from wv.cli.common import finish, json_option, options_from, worker_options
from wv.curate.options import KeywordOptions, LdaOptions


@click.command()
@click.argument("root", type=click.Path())
@options_from(LdaOptions, "topics", "passes", "iterations", "chunksize", "no_below", "no_above", "keep_n", "fit_docs", "similarity", "top_topics", "top_classes", "split")
@click.option("--model", "model", type=click.Path(file_okay=False), default=None, help="Score with this fitted model folder (e.g. ROOT/models/lda) instead of fitting one.")
@click.option("--overwrite", is_flag=True, help="Refit and rescore, replacing a model and sidecars made with other options.")
@worker_options
@options_from(LdaOptions, "seed")
@json_option
def lda(root, topics, passes, iterations, chunksize, no_below, no_above, keep_n, fit_docs, similarity, top_topics, top_classes, split, model, overwrite, workers, executor, ray_address, seed, as_json):
    """Text-topic score: similarity of each sample's LDA topics to its class's mean; label weights.

    Cleans the web text (lowercase, letters, stop and web words out, Porter stems), fits gensim's
    online LDA with its E-steps over --workers processes (saved to ROOT/models/lda/ with its
    dictionary and the class means), then writes, per shard:

    \b
      scores/lda            similarity, top_topics, top_weights, tokens, text_flag
      scores/label_weights  label_topk, weight_topk, sim_topk, label_weight
      features/lda          each sample's topic distribution (float16)

    Empty, non-English or unknown-word text gets a null similarity and its reason in text_flag.
    A re-run resumes; other options are refused unless --overwrite. The same --seed gives the
    same model and scores for any --workers.

    \b
    Example:
      wv score lda ROOT --topics 500 --fit-docs 1000000
      wv score lda ROOT --split val --model ROOT/models/lda
      wv select ROOT --drop "lda.similarity < 0.1"
    """
    from wv.curate.lda import score_lda

    options = LdaOptions(
        topics=topics,
        passes=passes,
        iterations=iterations,
        chunksize=chunksize,
        no_below=no_below,
        no_above=no_above,
        keep_n=keep_n,
        fit_docs=fit_docs,
        similarity=similarity,
        top_topics=top_topics,
        top_classes=top_classes,
        split=split,
        seed=seed,
    )
    figures = score_lda(root, options, model=model, workers=workers, executor=executor, ray_address=ray_address, overwrite=overwrite)
    flags = ", ".join(f"{flag} {count}" for flag, count in sorted(figures["flags"].items())) or "none"
    median = figures["median_similarity"]
    seconds = figures["seconds"]
    finish(
        f"wv score lda: {root} ({split})",
        figures,
        as_json,
        [
            f"model {figures['paths']['model']} ({figures['topics']} topics, {'fitted now' if figures['fitted'] else 'reused'}"
            + (f", {figures['fit_docs']} documents, {figures['vocabulary']} words" if "fit_docs" in figures else "")
            + ")",
            f"scored {figures['scored']} of {figures['samples']} samples; not scored: {flags}",
            f"median {figures['similarity']} similarity {median:.3f}" if median is not None else "no sample scored",
            f"shards written {figures['shards_written']}, already complete {figures['shards_skipped']}; fit {seconds['fit']} s, topics {seconds['topics']} s, scores {seconds['scores']} s",
            f"scores: {figures['paths']['scores']}, {figures['paths']['label_weights']}",
            f'next: wv select {root} --drop "lda.similarity < 0.1" --dry-run',
        ],
    )


@click.command()
@click.argument("root", type=click.Path())
@options_from(KeywordOptions, "min_docs", "max_doc_share", "max_words", "split")
@click.option("--vocabulary", type=click.Path(file_okay=False), default=None, help="Use this vocabulary folder (e.g. ROOT/models/keywords) instead of building one.")
@click.option("--overwrite", is_flag=True, help="Rebuild the vocabulary and rewrite the sidecars.")
@worker_options
@json_option
def keywords(root, min_docs, max_doc_share, max_words, split, vocabulary, overwrite, workers, executor, ray_address, as_json):
    """Keywords: the nouns and adjectives of each sample's web text, over a dataset-wide vocabulary.

    Nouns and adjectives come from one of two lexicons, named in the summary and in --json "lexicon":

    \b
      tagger             NLTK's perceptron POS tagger, in context (when its data is installed:
                         python -m nltk.downloader averaged_perceptron_tagger_eng wordnet)
      wordnet-frequency  no tagger: each word's commonest part of speech in WordNet's sense-tagged
                         corpus ("dogs" -> dog; "eating", "quickly" dropped; "building" kept)

    Words in fewer than --min-docs documents or in more than --max-doc-share of them are dropped.
    Writes scores/keywords/{shard}.parquet (keywords, count) and models/keywords/ (the vocabulary).

    \b
    Example:
      wv score keywords ROOT --min-docs 5 --max-doc-share 0.05
      wv score keywords ROOT --split val --vocabulary ROOT/models/keywords
    """
    from wv.curate.keywords import score_keywords

    options = KeywordOptions(min_docs=min_docs, max_doc_share=max_doc_share, max_words=max_words, split=split)
    figures = score_keywords(root, options, vocabulary=vocabulary, workers=workers, executor=executor, ray_address=ray_address, overwrite=overwrite)
    finish(
        f"wv score keywords: {root} ({split})",
        figures,
        as_json,
        [
            f"vocabulary {figures['vocabulary']} words ({figures['lexicon']}; {'built now' if figures['vocabulary_built'] else 'reused'}): {figures['paths']['vocabulary']}",
            f"dropped {figures['dropped_common']} common words (e.g. {', '.join(figures['most_common_dropped'][:8]) or '-'}) and {figures['dropped_rare']} rare ones",
            f"{figures['keywords_per_image']} keywords per image; {figures['skipped']} of {figures['samples']} samples have none",
            f"shards written {figures['shards_written']}, already complete {figures['shards_skipped']}, {figures['seconds']} s",
            f"scores: {figures['paths']['scores']}",
        ],
    )
