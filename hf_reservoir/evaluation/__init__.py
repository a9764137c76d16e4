"""Scoring and translating: BLEU and chrF, and translation with a saved model."""
