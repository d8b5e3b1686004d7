"""The emulator's schema is a faithful subset of Stash's, and every document we send is valid there.

Real Stash's schema is reference data kept beside the checkout (`../shared/stash-graphql-schema`);
without it these checks cannot run, and they are skipped saying so. The point of the subset
rule: a document the emulator accepts is one real Stash accepts too, so green tests against
the emulator mean something for the real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    parse,
    validate,
)

from emulators.stash_server import load_schema
from stash import queries

ROOT = Path(__file__).resolve().parent.parent
REAL_SCHEMA_DIR = ROOT.parent / "shared" / "stash-graphql-schema"


@pytest.fixture(scope="module")
def real() -> GraphQLSchema:
    if not (REAL_SCHEMA_DIR / "schema.graphql").is_file():
        pytest.skip(f"Stash's real schema is not at {REAL_SCHEMA_DIR} (CI places it at ../shared)")
    parts = [(REAL_SCHEMA_DIR / "schema.graphql").read_text(encoding="utf-8")]
    parts += [p.read_text(encoding="utf-8") for p in sorted((REAL_SCHEMA_DIR / "types").glob("*.graphql"))]
    return build_schema("\n".join(parts))


@pytest.fixture(scope="module")
def ours() -> GraphQLSchema:
    return load_schema()


def _own_types(schema: GraphQLSchema) -> dict:
    return {name: t for name, t in schema.type_map.items() if not name.startswith("__")}


def _required(arg_or_field) -> bool:
    return isinstance(arg_or_field.type, GraphQLNonNull) and arg_or_field.default_value is None


def test_every_declared_type_exists_in_stash_with_the_same_kind(real, ours):
    for name, ours_type in _own_types(ours).items():
        assert name in real.type_map, f"{name} is not a Stash type"
        assert type(real.type_map[name]) is type(ours_type), f"{name}: kind differs from Stash"


def test_every_field_and_argument_has_stashs_type(real, ours):
    problems = []
    for name, ours_type in _own_types(ours).items():
        if not isinstance(ours_type, (GraphQLObjectType, GraphQLInterfaceType)):
            continue
        real_fields = real.type_map[name].fields
        for field_name, field in ours_type.fields.items():
            real_field = real_fields.get(field_name)
            if real_field is None:
                problems.append(f"{name}.{field_name} does not exist in Stash")
                continue
            if str(field.type) != str(real_field.type):
                problems.append(f"{name}.{field_name}: {field.type} here, {real_field.type} in Stash")
            for arg_name, arg in field.args.items():
                real_arg = real_field.args.get(arg_name)
                if real_arg is None or str(real_arg.type) != str(arg.type):
                    problems.append(f"{name}.{field_name}({arg_name}:) differs from Stash")
            for arg_name, real_arg in real_field.args.items():
                if _required(real_arg) and arg_name not in field.args:
                    problems.append(f"{name}.{field_name} lacks Stash's required argument {arg_name}")
    assert problems == []


def test_every_input_field_has_stashs_type_and_required_ones_are_kept(real, ours):
    problems = []
    for name, ours_type in _own_types(ours).items():
        if not isinstance(ours_type, GraphQLInputObjectType):
            continue
        real_fields = real.type_map[name].fields
        for field_name, field in ours_type.fields.items():
            real_field = real_fields.get(field_name)
            if real_field is None or str(real_field.type) != str(field.type):
                problems.append(f"input {name}.{field_name} differs from Stash")
        for field_name, real_field in real_fields.items():
            if _required(real_field) and field_name not in ours_type.fields:
                problems.append(f"input {name} lacks Stash's required field {field_name}")
    assert problems == []


def test_enum_values_are_stashs(real, ours):
    for name, ours_type in _own_types(ours).items():
        if isinstance(ours_type, GraphQLEnumType):
            assert set(ours_type.values) <= set(real.type_map[name].values), name
        if isinstance(ours_type, GraphQLScalarType):
            assert isinstance(real.type_map[name], GraphQLScalarType), name


def test_no_object_field_takes_a_required_argument(ours):
    """stashapi selects every non-deprecated field in its generated fragments, without arguments."""
    offenders = [
        f"{name}.{field_name}"
        for name, t in _own_types(ours).items() if isinstance(t, GraphQLObjectType)
        and name not in ("Query", "Mutation")
        for field_name, field in t.fields.items()
        if any(_required(arg) for arg in field.args.values())
    ]
    assert offenders == []


def _plugin_documents() -> dict[str, str]:
    documents = {}
    for name in dir(queries):
        value = getattr(queries, name)
        if name.isupper() and isinstance(value, str) and value.lstrip().startswith(("query", "mutation")):
            documents[name] = value
    return documents


def test_the_plugin_has_documents_to_check():
    assert {"VERSION", "PLUGIN_CONFIG", "FIND_SCENE", "FIND_SCENES", "COUNT_SCENES"} <= set(_plugin_documents())


@pytest.mark.parametrize("name", sorted(_plugin_documents()))
def test_plugin_document_is_valid_against_real_stash(real, name):
    errors = validate(real, parse(_plugin_documents()[name]))
    assert [e.message for e in errors] == []


@pytest.mark.parametrize("name", sorted(_plugin_documents()))
def test_plugin_document_is_served_by_the_emulator(ours, name):
    errors = validate(ours, parse(_plugin_documents()[name]))
    assert [e.message for e in errors] == []


def test_a_document_real_stash_rejects_is_rejected_here_too(real, ours):
    bad = "query { findScenes(filter: {per_page: 1}) { scenes { id path } } }"  # Scene.path removed in v0.24
    assert validate(real, parse(bad))
    assert validate(ours, parse(bad))
