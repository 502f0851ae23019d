"""Textual screens (the TUI). Only this package and the app module import Textual."""
