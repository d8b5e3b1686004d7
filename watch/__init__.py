"""Plex watch history into Stash: plays and resume points, each play exactly once."""
