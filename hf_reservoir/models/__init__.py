"""The models: one folder per architecture, each with its configuration and modeling file."""
