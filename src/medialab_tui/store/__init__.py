"""The store: SQLite tables, sessions, migrations and artifact files.

Nothing here imports Textual, torch or diffusers.
"""
