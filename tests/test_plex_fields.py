"""plex.fields: the one table of managed Plex fields, and the records and readers that use it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import fields as dataclass_fields

from plex import xmlread
from plex.desired import DesiredState
from plex.diff import plan_edit
from plex.fields import BY_NAME, FIELDS, SCALARS, TAG_LISTS
from plex.records import CurrentState


def test_every_field_is_an_attribute_of_both_records() -> None:
    desired = {f.name for f in dataclass_fields(DesiredState)}
    current = {f.name for f in dataclass_fields(CurrentState)}
    assert all(f.attr in desired and f.attr in current for f in FIELDS)
    assert len(BY_NAME) == len(FIELDS) == len({f.attr for f in FIELDS})


def test_the_xml_reader_reads_every_field_from_where_the_table_says() -> None:
    attrs = " ".join(f'{f.xml}="{i + 1}"' for i, f in enumerate(SCALARS))
    tags = "".join(f'<{f.xml} tag="{f.word}"/>' for f in TAG_LISTS)
    video = ET.fromstring(f'<Video ratingKey="1" {attrs}>{tags}</Video>')
    state = xmlread.current_state(video)
    for i, f in enumerate(SCALARS):
        value = getattr(state, f.attr)
        assert str(value).startswith(str(i + 1)), (f.name, value)
    for f in TAG_LISTS:
        assert [getattr(v, "name", v) for v in getattr(state, f.attr)] == [f.word], f.name


def test_the_diff_sends_every_scalar_under_its_plex_name() -> None:
    special = {"originallyAvailableAt": "2021-01-02", "userRating": 7.0}
    want = {f.attr: special.get(f.name, f"new {f.name}") for f in SCALARS}
    plan = plan_edit(DesiredState(**want), CurrentState("1"), None, lock=False, preserve=False)
    assert {f"{f.name}.value" for f in SCALARS} <= set(plan.params)
