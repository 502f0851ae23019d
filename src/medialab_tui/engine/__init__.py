"""The engine: pipelines, the asyncio scheduler, the worker protocol and stages.

Only `engine.worker` (run in its own process) imports torch and diffusers.
"""
