"""Names and helpers every stage shares: the run folder's files, statistics of intervals."""
