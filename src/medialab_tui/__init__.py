"""medialab: a keyboard-driven terminal studio for generative media."""

__version__ = "0.1.0"
