"""Probing what each encoder layer represents (``hf-reservoir probe``)."""
