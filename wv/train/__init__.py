"""Training: the `wv train` loop, losses, crops, evaluation (`wv eval`), process groups and curves.

The batches come from the streaming sampler library, wv.stream."""
