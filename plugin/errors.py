"""The exceptions our Stash and Plex façades raise at their edge.

Library exceptions (plexapi, requests, stashapi) never travel past the façade that called
the library: it translates them into one of these, and each class carries exactly what
`worker.policy` needs to decide what happens next. Keeping the vocabulary this small is
what lets one policy serve every caller.
"""

from __future__ import annotations


class Stash2PlexError(Exception):
    """Base of every error we expect and handle; anything else is a bug in the plugin."""


class SettingsError(Stash2PlexError):
    """A required setting is missing or unusable; the message names it and where to set it."""


# --- Plex -----------------------------------------------------------------------------


class PlexNotFound(Stash2PlexError):
    """No Plex item has any of the scene's files (yet): usually Plex has not scanned it."""

    def __init__(self, message: str, paths_tried: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.paths_tried = paths_tried


class AmbiguousMatch(Stash2PlexError):
    """No exact path matched and the file-name fallback found several candidates."""

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


class DuplicateItem(Stash2PlexError):
    """The scene's Plex item belongs to another scene (see `plex.claims`): writing it would
    overwrite that scene's metadata, and the next sync of either would overwrite it back."""

    def __init__(self, message: str, owner: int) -> None:
        super().__init__(message)
        self.owner = owner


class PlexUnavailable(Stash2PlexError):
    """Plex cannot be reached at all (refused, unresolvable, unreachable): an outage."""


class TransientError(Stash2PlexError):
    """A request failed in a way that may succeed soon: timeout, reset, 5xx, 429.

    `retry_after` is the server's own hint in seconds (429/503 Retry-After), honoured by
    the policy in preference to our backoff.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PlexAuthError(Stash2PlexError):
    """Plex answered 401: the token is wrong or revoked. Retrying cannot help."""


class InvalidData(Stash2PlexError):
    """Plex rejected what we sent (400) or the scene's data cannot be written as it is."""


# --- Stash ----------------------------------------------------------------------------


class StashUnavailable(Stash2PlexError):
    """Stash's GraphQL endpoint cannot be reached or answered 5xx."""


class StashAuthError(Stash2PlexError):
    """Stash answered 401: the session cookie expired or the API key is wrong."""


class SceneGone(Stash2PlexError):
    """The scene no longer exists in Stash; its job is finished, not failed."""
