"""Reading and writing what other image tools understand: A1111's infotext, ComfyUI's
graphs, InvokeAI's and SwarmUI's metadata. Standard library and Pillow only: no torch,
no Textual, so the CLI and the TUI can use it cheaply."""
