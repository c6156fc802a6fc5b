"""The torch reference backend: the checkpoint itself, in eager mode."""
