"""The emulated Stash server (work in progress: only the schema loader exists so far).

The schema is the project's own subset of Stash's SDL (emulators/stash_schema.graphql),
checked against the real one by tests/test_stash_conformance.py.
"""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLSchema, build_schema

SCHEMA_PATH = Path(__file__).with_name("stash_schema.graphql")


def load_schema() -> GraphQLSchema:
    """Build the emulator's schema from its SDL file."""
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
