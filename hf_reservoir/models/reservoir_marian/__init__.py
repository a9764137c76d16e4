"""The reservoir Marian model. The two files here are also the Hub remote code of a saved folder."""
