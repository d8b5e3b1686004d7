"""Hostile input (issue 19 point 3), fuzzed with hypothesis.

Whatever Stash hands the plugin (any stdin, any hook context, any task args, any scene
data) and whatever comes back from Plex (truncated XML, an HTML page, an empty 200): never
a traceback at error level, always one valid JSON object on stdout, never an event lost,
never a value Plex would reject. The pure functions take many examples in-process; the
plugin as Stash runs it takes a few, because each is a process start.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import Stash2Plex
from base.errors import Stash2PlexError, TransientError
from base.protocol import InputError, StashLog, read_input, write_result
from base.settings import SCHEMA, load_settings
from emulators.stage import stage
from plex.connection import _plex_answer
from plex.desired import SUMMARY_MAX, TITLE_MAX, complete_date, desired_state
from plugin.dispatch import HOOKS, route
from plugin.hooks import BadHookInput, hook_entity_id, hook_payload
from stash.client import scene_from_gql
from sync_queue.db import connect
from sync_queue.inbox import read_inbox
from sync_queue.spool import record_or_spool
from tests.e2e_worker_support import QUIET, audited
from tests.plugin_host import make_host
from tests.secret_audit import AUDIT

#: Control characters, NUL, bidi overrides, emoji, lone surrogates: the text Stash may hold.
NASTY = ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u202e", "\u200f", "\ufeff", "\U0001f600", "\ud800",
         "\udfff", "\r\n", "\t", "\u0301", "\\", "%", "?", "#", "\n", "&", "<", "'", '"']
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=12).map("".join)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=False), nasty_text)
json_values = st.recursive(json_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                 st.dictionaries(nasty_text, kids, max_size=4)),
                           max_leaves=12)
hook_ids = st.one_of(st.integers(min_value=-5, max_value=2**63), nasty_text, st.none(), st.floats(allow_nan=True),
                     st.lists(st.integers(), max_size=2))
hook_contexts = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(sorted(HOOKS)), nasty_text)},
    optional={"id": hook_ids, "input": json_values, "inputFields": st.lists(nasty_text, max_size=3)})
DATES = ["0000-00-00", "2024-13-45", "2024-02-30", "2024", "2024-06", "2024-06-01", "-1", "", "99999-01-01",
         "2024-1-1", "２０２４"]
RATINGS = [None, -1, 0, 1, 50, 100, 101, 10**12, -(10**12)]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def assert_protocol(stdout: str, stderr: str, max_errors: int = 1) -> dict[str, Any]:
    """What Stash needs: one JSON object on stdout, every stderr line prefixed, no traceback
    at error level, at most one error line, and all of it encodable as UTF-8."""
    stdout.encode("utf-8")
    stderr.encode("utf-8")
    result = json.loads(stdout)
    assert isinstance(result, dict) and set(result) == {"output", "error"}, stdout
    lines = [line for line in stderr.split("\n") if line.strip()]
    assert all(len(line) > 3 and line[0] == "\x01" and line[2] == "\x02" for line in lines), lines
    errors = [line for line in lines if line[1] == "e"]
    assert len(errors) <= max_errors and not any("Traceback" in line for line in errors), errors
    return result


def run_main(stdin_text: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert Stash2Plex.main() == 0
    return assert_protocol(out.getvalue(), err.getvalue())


# ---- stdin, hook contexts, task args (in-process) ---------------------------------------------


@FAST
@given(st.one_of(st.text(), json_values.map(json.dumps), st.just("")))
def test_any_stdin_is_parsed_or_refused_with_an_input_error(text: str) -> None:
    try:
        inp = read_input(io.StringIO(text))
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(inp.server_connection, dict) and isinstance(inp.args, dict)


@FAST
@given(st.dictionaries(nasty_text, json_values, max_size=4), st.one_of(st.none(), json_values))
def test_any_task_args_route_or_fail_with_a_clear_error(args: dict[str, Any], mode: Any) -> None:
    if mode is not None:
        args["mode"] = mode
    try:
        target = route(args)
    except Stash2PlexError as exc:
        assert str(exc)
        return
    assert target.kind in ("hook", "task", "internal")


task_arg_values = st.one_of(json_values, st.sampled_from(["inf", "-inf", "nan", "1e400", "-0", "0.5", "7",
                                                             " 12 ", "all", "ALL", "", "1_000"]))


@FAST
@given(raw=task_arg_values)
def test_task_number_arguments_are_a_usable_number_or_a_clear_error(raw: Any) -> None:
    import math

    from tasks.args import BadTaskArgument, number, parse_limit

    try:
        limit = parse_limit(raw)
    except BadTaskArgument as exc:
        assert "limit" in str(exc)
    else:
        assert limit is None or (isinstance(limit, int) and limit > 0)
    try:
        days = number(raw, "days")
    except BadTaskArgument as exc:
        assert "days" in str(exc)
    else:
        assert math.isfinite(days) and days >= 0


@FAST
@given(hook_contexts)
def test_any_hook_context_gives_a_positive_id_or_a_bad_hook_error(context: dict[str, Any]) -> None:
    try:
        entity = hook_entity_id(context)
    except BadHookInput as exc:
        assert "nothing recorded" in str(exc)
        return
    assert entity > 0
    payload = hook_payload(context)
    assert payload is None or all(isinstance(i, int) and i > 0 and i != entity for i in payload["merged"])
    json.dumps(payload)  # what the inbox stores must serialise


@FAST
@given(context=hook_contexts, extra=st.dictionaries(nasty_text, json_values, max_size=3))
def test_the_entrypoint_answers_any_input_that_starts_no_process_in_protocol(
        context: dict[str, Any], extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Inputs that would record an event (a known hook with a usable id) start a worker:
    # those go through the host below. Everything else is answered in-process here.
    try:
        usable = context.get("type") in HOOKS and hook_entity_id(context) > 0
    except BadHookInput:
        usable = False
    assume(not usable)
    stdin = json.dumps({"server_connection": {"Port": 9, "Host": "127.0.0.1"},
                        "args": {**extra, "hookContext": context}})
    result = run_main(stdin, monkeypatch)
    assert result["error"]


@FAST
@given(text=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))), where=st.sampled_from(["mode", "raw"]))
def test_the_entrypoint_answers_garbage_stdin_and_unknown_modes(text: str, where: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = text if where == "raw" else json.dumps({"server_connection": {}, "args": {"mode": text}})
    from plugin.dispatch import INTERNAL, TASKS

    assume(text not in TASKS and text not in INTERNAL)
    assert run_main(stdin, monkeypatch)["error"]


@FAST
@given(nasty_text, st.one_of(st.none(), nasty_text))
def test_log_lines_and_the_result_survive_any_text(message: str, error: str | None) -> None:
    err, out = io.StringIO(), io.StringIO()
    log = StashLog(stream=err)
    log.error(message)
    log.warning(message * 3)
    write_result(output={"echo": message}, error=error, log=log, stream=out)
    result = assert_protocol(out.getvalue(), err.getvalue(), max_errors=len(message))  # a message's own lines
    assert (result["error"] is None) == (error is None)


@FAST
@given(values=st.dictionaries(st.sampled_from([spec.name for spec in SCHEMA]),
                              st.one_of(json_values, st.sampled_from(["inf", "nan", "-5", "1e309", "=>", ";;"]))))
def test_any_stored_settings_load_with_warnings_and_never_raise(values: dict[str, Any]) -> None:
    warnings: list[str] = []
    settings_ = load_settings(values, warnings.append)
    assert all(isinstance(w, str) and "\n" not in w for w in warnings)
    assert settings_.max_retries >= 1 and settings_.max_tags >= 0


# ---- an event is never lost, whatever the hook carries ----------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contexts=st.lists(hook_contexts, min_size=1, max_size=6))
def test_every_usable_hook_event_is_recorded(tmp_path_factory: pytest.TempPathFactory,
                                             contexts: list[dict[str, Any]]) -> None:
    folder = tmp_path_factory.mktemp("events")
    expected = []
    for n, context in enumerate(contexts):
        trigger = context.get("type")
        try:
            entity = hook_entity_id(context)
        except BadHookInput:
            continue
        if trigger not in HOOKS:
            continue
        record_or_spool(folder, HOOKS[trigger], entity, trigger, 1000.0 + n, payload=hook_payload(context))
        expected.append((HOOKS[trigger], entity, trigger))
    if not expected:
        return
    conn = connect(folder)
    try:
        assert [(e.kind, e.entity_id, e.reason) for e in read_inbox(conn, 100)] == expected
    finally:
        conn.close()


# ---- Stash scene data --------------------------------------------------------------------------


def tag_lists() -> st.SearchStrategy[list[str]]:
    return st.one_of(st.lists(nasty_text, max_size=20),
                     st.just([f"tag {i}" for i in range(10_000)]),
                     st.just(["same", "SAME", "Same ", " same"]))


raw_scenes = st.fixed_dictionaries({
    "id": st.integers(min_value=1, max_value=2**31),
    "title": st.one_of(st.none(), nasty_text, st.just("x" * 5000)),
    "code": st.one_of(st.none(), nasty_text),
    "details": st.one_of(st.none(), nasty_text, st.just(("long details " * 80_000)[:1_000_000])),
    "date": st.one_of(st.none(), st.sampled_from(DATES), nasty_text),
    "rating100": st.sampled_from(RATINGS),
    "files": st.lists(st.fixed_dictionaries({"path": nasty_text.map(lambda t: "/data/stash/" + t + ".mp4"),
                                             "size": st.integers(min_value=-1, max_value=2**62)}), max_size=3),
    "studio": st.one_of(st.none(), st.fixed_dictionaries({"id": st.integers(1, 9).map(str), "name": nasty_text})),
    "performers": st.lists(st.fixed_dictionaries({"id": st.integers(1, 9).map(str), "name": nasty_text,
                                                  "image_path": st.one_of(st.none(), nasty_text)}), max_size=4),
    "tags": tag_lists().map(lambda names: [{"id": str(i + 1), "name": n} for i, n in enumerate(names)]),
    "paths": st.fixed_dictionaries({"screenshot": st.one_of(st.none(), nasty_text)}),
})

PLEX_SETTINGS = load_settings({"plex_url": "http://127.0.0.1:32400", "plex_token": "t", "max_tags": 0}, print)


def clean_line(value: str, limit: int = TITLE_MAX) -> None:
    assert not CONTROL.search(value), repr(value[:80])
    assert "\n" not in value and len(value) <= limit and value == value.strip()
    value.encode("utf-8")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(raw_scenes)
def test_whatever_a_scene_holds_plex_is_asked_only_for_values_it_accepts(raw: dict[str, Any]) -> None:
    state = desired_state(scene_from_gql(raw), PLEX_SETTINGS)
    for value in (state.title, state.title_sort, state.studio, state.tagline):
        if value is not None:
            clean_line(value)
    if state.summary is not None:
        assert not CONTROL.search(state.summary.replace("\n", "").replace("\t", ""))
        assert len(state.summary) <= SUMMARY_MAX
        state.summary.encode("utf-8")
    if state.originally_available_at:
        assert complete_date(state.originally_available_at) == state.originally_available_at
    if raw["date"] in ("0000-00-00", "2024-13-45"):
        assert state.originally_available_at is None  # not a real date: Plex's is left alone
    assert state.rating is None or 0 < state.rating <= 10
    for names in (state.genres or (), state.collections or ()):
        for name in names:
            clean_line(name)
    if state.genres:
        assert len({g.casefold() for g in state.genres}) == len(state.genres)
    for actor in state.actors or ():
        clean_line(actor.name)


CJK = st.text(alphabet=st.sampled_from("漢字かな한국어Ωж\U0001f600"), min_size=1, max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(raw=raw_scenes, long_text=st.sampled_from(["漢" * 12_000, "Ω " * 6_000, "plain " * 2_000]),
       names=st.lists(CJK, max_size=60), plex_genres=st.lists(CJK, max_size=30))
def test_the_edit_for_any_scene_fits_in_one_request_url(raw: dict[str, Any], long_text: str,
                                                        names: list[str], plex_genres: list[str]) -> None:
    from plexapi.utils import joinArgs

    from plex.diff import plan_edit
    from plex.records import CurrentState

    raw = {**raw, "details": long_text, "title": long_text[:300],
           "tags": raw["tags"] + [{"id": str(90_000 + i), "name": n * 6} for i, n in enumerate(names)],
           "performers": raw["performers"] + [{"id": str(i), "name": n * 6, "image_path": None}
                                              for i, n in enumerate(names)]}
    state = desired_state(scene_from_gql(raw), PLEX_SETTINGS)
    current = CurrentState("1", "1", genres=tuple(g * 8 for g in plex_genres))
    plan = plan_edit(state, current, None, lock=True, preserve=False)
    url = f"/library/sections/1/all{joinArgs({**plan.params, 'id': '1', 'type': 1})}"
    assert len(url) < 65_536 - 512, len(url)  # the request line, with room for the method and version


@FAST
@given(rest=st.lists(nasty_text.filter(lambda t: t.strip("/\\")), min_size=1, max_size=4),
       others=st.lists(nasty_text, max_size=5))
def test_a_file_path_holding_any_characters_maps_and_matches_exactly_itself(rest: list[str],
                                                                             others: list[str]) -> None:
    from plex.matcher import IndexEntry, MatchKind, build_index, match
    from plex.pathmap import path_key, to_plex, to_stash
    from stash.records import SceneFile

    mapping = (("/data/stash", "/media/stash"),)
    path = "/data/stash/" + "/".join(rest) + ".mp4"
    plex_path = "/media/stash" + path[len("/data/stash"):]  # where Plex reports the same file
    # Compared as keys: a backslash counts as a separator on both sides alike.
    assert path_key(to_plex(path, mapping)) == path_key(plex_path)
    assert path_key(to_stash(plex_path, mapping)) == path_key(path)
    index = build_index([IndexEntry(plex_path, "7")] + [IndexEntry(f"/media/stash/{o}.mkv", str(100 + i))
                                                       for i, o in enumerate(others)])
    result = match([SceneFile(path)], index, mapping, strict=True)
    assert (result.kind, result.rating_key) == (MatchKind.EXACT, "7")


# ---- Plex answers that are not Plex's XML -------------------------------------------------------


ATTRS = ["ratingKey", "librarySectionID", "title", "titleSort", "studio", "summary", "userRating",
         "originallyAvailableAt", "thumb", "art", "totalSize", "size"]
xml_attrs = st.dictionaries(st.sampled_from(ATTRS), st.one_of(nasty_text, st.sampled_from(["", "nan", "-1", "1e999",
                                                                                          "x", "9" * 40])),
                            max_size=len(ATTRS))


@FAST
@given(container=xml_attrs, videos=st.lists(st.tuples(
    st.sampled_from(["Video", "Directory", "Photo"]), xml_attrs,
    st.lists(st.tuples(st.sampled_from(["Genre", "Role", "Collection", "Field", "Media", "Part"]),
                       st.dictionaries(st.sampled_from(["tag", "thumb", "name", "locked", "file"]), nasty_text,
                                       max_size=3)), max_size=5)), max_size=4))
def test_any_well_formed_plex_answer_is_read_without_an_exception(
        container: dict[str, str], videos: list[tuple[str, dict[str, str], list[tuple[str, dict[str, str]]]]]) -> None:
    from xml.etree.ElementTree import Element, SubElement, fromstring, tostring

    from plex import xmlread

    def clean(attrs: dict[str, str]) -> dict[str, str]:  # what XML can carry at all
        return {k: CONTROL.sub("", v) for k, v in attrs.items()}

    root = Element("MediaContainer", clean(container))
    for tag, attrs, children in videos:
        video = SubElement(root, tag, clean(attrs))
        for child_tag, child_attrs in children:
            SubElement(video, child_tag, clean(child_attrs))
    root = fromstring(tostring(root))  # what plexapi hands over: parsed text
    states = xmlread.current_states(root)
    assert all(isinstance(k, str) for k in states)
    xmlread.index_entries(root)
    xmlread.sections(root)
    assert xmlread.total_size(root, 7) >= 0


@FAST
@given(st.one_of(st.none(), st.sampled_from(["html", "body", "Response", "error", "mediacontainer"])))
def test_a_get_answer_that_is_not_plex_xml_is_transient(tag: str | None) -> None:
    from xml.etree.ElementTree import Element

    root = None if tag is None else Element(tag)
    with pytest.raises(TransientError, match="not its XML"):
        _plex_answer(root, True, "GET /library/sections")
    assert _plex_answer(root, False, "an edit") is root  # an edit's or a scan's answer may be empty


# ---- through the host, as Stash runs the plugin --------------------------------------------------


@FEW
@given(stdin=st.one_of(st.just(""), st.text(max_size=40), json_values.map(json.dumps),
                       st.tuples(hook_contexts, st.dictionaries(nasty_text, json_values, max_size=2)).map(
                           lambda pair: json.dumps({"server_connection": {"Port": 9, "Host": "127.0.0.1"},
                                                    "args": {**pair[1], "hookContext": pair[0]}}))))
def test_the_plugin_as_stash_runs_it_answers_in_protocol_and_records_usable_hooks(
        tmp_path_factory: pytest.TempPathFactory, stdin: str) -> None:
    folder = tmp_path_factory.mktemp("host")
    host = make_host(folder / "stash", port=9, env={"STASH2PLEX_DATA_DIR": str(folder / "data")})
    result = host.run_raw(stdin, is_task=False)
    assert result.returncode == 0
    out = assert_protocol(result.stdout, result.stderr)
    if out["error"] is None and isinstance(out["output"], dict) and "recorded" in out["output"]:
        recorded = out["output"]["recorded"]
        conn = connect(folder / "data")
        try:
            assert [(e.entity_id, e.reason) for e in read_inbox(conn, 10)] == [(recorded["id"], recorded["trigger"])]
        finally:
            conn.close()


HOSTILE_PATH = "/data/stash/odd\\name 100% real?#1\nline.mp4"


def test_a_hostile_scene_is_synced_with_cleaned_values_and_odd_paths_stay_honest(tmp_path: Path) -> None:
    with stage(3, seed=5, work_dir=tmp_path, settings={**QUIET, "max_tags": 0},
               on_result=audited("hostile scene")) as st_:
        AUDIT.add_secret(st_.plex.token)
        lib = st_.library
        from emulators.stash_library import Tag

        first = max(lib.tags) + 1
        for i in range(10_000):
            lib.tags[first + i] = Tag(id=first + i, name=f"t{i} \u202e\U0001f600\x00")
        title = "Bad\x00 \x1b[31mtitle\u202e \U0001f600\x07 " + "y" * 400
        hostile = lib.add_scene(files=["/data/stash/hostile.mp4"], title=title, details="漢\x00\x01" * 350_000,
                                date="2024-13-45", rating100=10**12, tag_ids=list(range(first, first + 10_000)))
        odd = lib.add_scene(files=[HOSTILE_PATH], title="Odd path", date="0000-00-00", rating100=-7)
        st_.scan_into_plex([hostile, odd])
        out = st_.task("all")
        assert_protocol(out.stdout, out.stderr)
        assert out.error is None, out.stderr[-2000:]
        item = st_.plex_item(hostile)
        assert out.output["summary"]["synced"] == 5, (out.output, out.lines("warning")[-5:])
        clean_line(item.title)
        assert item.title.startswith("Bad [31mtitle\u202e \U0001f600 yyy") and len(item.title) <= TITLE_MAX
        summary = item.fields.get("summary", "")
        assert 0 < len(summary) <= SUMMARY_MAX and "\x00" not in summary and "\x01" not in summary
        assert summary.startswith("漢漢") and summary.endswith("\u2026")  # cut to fit one request
        assert "originallyAvailableAt" not in item.fields and not item.fields.get("userRating")
        genres = [g for g in item.tags.get("Genre", [])] if hasattr(item, "tags") else []
        assert all(not CONTROL.search(str(g)) for g in genres)
        odd_item = st_.plex_item(odd)
        assert odd_item is not None and odd_item.title == "Odd path"
        assert "originallyAvailableAt" not in odd_item.fields and not odd_item.fields.get("userRating")


@pytest.mark.parametrize("kind", ["truncated", "html", "empty"])
def test_plex_answers_that_are_not_its_xml_are_retried_and_nothing_is_written_from_them(
        tmp_path: Path, kind: str) -> None:
    with stage(4, seed=9, work_dir=tmp_path, settings=QUIET, on_result=audited(f"plex garbled {kind}")) as st_:
        AUDIT.add_secret(st_.plex.token)
        st_.plex.faults.garble(2, kind)  # the server root, then the section list
        out = st_.task("all")
        assert_protocol(out.stdout, out.stderr)
        assert out.error is None, out.stderr[-2000:]
        assert out.output["summary"]["synced"] == 4, out.output
        from tests.e2e_worker_support import mismatches

        assert all(mismatches(st_, sid) == [] for sid in st_.library.sorted_ids())
        # Later, mid-sync: a listing cut short or replaced must not read as "every scene is gone".
        for sid in st_.library.sorted_ids():
            st_.library.update_scene(sid, title=f"Second pass {sid}")
        st_.plex.faults.garble(1, kind)
        again = st_.task("all")
        assert_protocol(again.stdout, again.stderr)
        assert again.error is None and again.output["summary"]["synced"] == 4, again.stderr[-2000:]
        assert all(st_.plex_item(sid).title == f"Second pass {sid}" for sid in st_.library.sorted_ids())
