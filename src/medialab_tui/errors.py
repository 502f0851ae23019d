"""Errors a user can cause, carried as values with one clear sentence."""

from __future__ import annotations


class MedialabError(Exception):
    """Base class: the message is shown to the user as it is."""

    exit_code = 1


class InputError(MedialabError):
    """Invalid input: a pipeline file, a flag, an id. Nothing was changed."""

    exit_code = 2


class NotFound(InputError):
    """An id or a name that the store does not know."""


class EngineUnavailable(MedialabError):
    """No engine could be reached or started."""

    exit_code = 4
