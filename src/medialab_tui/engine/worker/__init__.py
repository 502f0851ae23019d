"""The worker process: the only place that imports torch and diffusers.

Started by the engine with `python -m medialab_tui.engine.worker`; it speaks
the JSON-lines protocol of `engine.worker.protocol` on stdin/stdout.
"""
