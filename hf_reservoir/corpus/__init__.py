"""The data stage: building corpora from Debian packages, loading parallel data, tokenizers and token batches."""
