"""Dry Run: what a sync would change in Plex, field by field, without writing anything.

The judgement is `reconciliation.dryrun` (what a sync would send, from the listing and the
full reads); this module builds a Plex side that cannot write (`trigger_plex_scan` off) and
reports one line per scene with a change and one summary line.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from plex.collection_specs import managed
from plex.matcher import match
from reconciliation.bulk import PAGE
from reconciliation.collections import Tally, preview
from reconciliation.dryrun import DryRunReport, LedgerReader, pages, preview_page, summary_line
from reconciliation.reconcile import read_listing
from tasks.args import parse_limit
from worker.runtime import RunContext
from worker.sync_ledger import LedgerClaims

#: Share of the progress bar for Plex's listing; Stash's pages get the rest.
INDEX_SHARE = 0.3


def dry_run(ctx: RunContext) -> dict[str, Any]:
    """The task: every scene (or the first `limit` by id), judged and reported, nothing written."""
    from plex.collections import read_children, read_collections
    from plex.connection import shared_connection
    from plex.sync import PlexSync

    limit = parse_limit(ctx.args.get("limit"))
    settings = replace(ctx.settings, trigger_plex_scan=False)  # a scan request is a write too
    settings.require("plex_url", "plex_token")
    ledger = LedgerReader(ctx.data_dir)
    try:
        plex = PlexSync(shared_connection(settings, ctx.data_dir), settings, ctx.stash.fetch_image,
                        LedgerClaims(ledger.queue, ctx.stash))
        report = DryRunReport(limit=limit)
        if not settings.enabled:
            ctx.log.warning("Stash2Plex is disabled (setting 'enabled'): this shows what a sync would change "
                            "once it is turned on; nothing is sent now.")
        now = time.time()
        ctx.log.progress(0.0)
        ctx.log.info("Stash2Plex dry run: reading Plex's listings" + (f" for the first {limit} scenes" if limit else "")
                     + "; nothing will be written.")
        index, snaps = read_listing(plex, now, lambda f: ctx.log.progress(INDEX_SHARE * f))
        report.plex_items = len(snaps)
        total = ctx.stash.count_scenes()
        total = max(min(total, limit) if limit else total, 1)
        size = min(PAGE, limit) if limit else PAGE
        tally = Tally()
        for page in pages(ctx.stash.iter_scenes(page_size=size), size, limit):
            rows = ledger.rows(s.id for s in page)
            for scene in page:
                found = match(scene.files, index, settings.path_map, settings.strict_matching)
                row = rows.get(scene.id)
                tally.add(scene, found.rating_key, settings, row.written.get("released") if row else None)
            diffs, read = preview_page(plex, settings, page, rows, index, snaps, time.time())
            report.reloaded += read
            for diff in diffs:
                report.add(diff, ctx.log.info)
            ctx.log.progress(INDEX_SHARE + (1 - INDEX_SHARE) * min(report.scenes / total, 1.0))
        if managed(settings):
            listings = {s.key: read_collections(plex.conn, s.key) for s in plex.sections()}
            rows = ledger.queue.collections.all() if ledger.queue is not None else []
            # With a limit, scenes past it still hold ours: no deletion can be judged.
            seen = rows if limit is None else [r for r in rows if (r.kind, r.source_id) in tally.specs]
            for verdict in preview(tally, listings, seen, lambda key: read_children(plex.conn, key),
                                   settings.lock_synced_fields):
                report.add_collection(verdict, ctx.log.info)
    finally:
        ledger.close()
    ctx.log.progress(1.0)
    if report.collection_counts:
        ctx.log.info("Stash2Plex dry run: collections: " + ", ".join(
            f"{status} {n}" for status, n in sorted(report.collection_counts.items())) + ".")
    ctx.log.info(summary_line(report.scenes, report.counts))
    return report.to_dict()
