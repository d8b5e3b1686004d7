"""Sync All through the Stash host: Stash2Plex beside a naive baseline, on loopback and on a modelled network.

    .venv/bin/python bench/bench_sync_all.py [--scenes 2000] [--networks loopback,modelled] [--rounds 3]

The product's path, as users run it: each plugin is a subprocess the Stash host starts
with Stash's stdin JSON (`emulators.host`), against the emulated Stash and Plex served from
this process. Both plugins sync the same generated library (every scene has a cover), each
on fresh emulators where Plex has scanned every file and nothing is synced yet: a first
sync. Stash2Plex runs with its default settings (poster and background on); the baseline
is `bench/naive/` (page the scenes; per scene: look the item up by file, one edit with every
field, one poster upload, each request waiting for the one before).

Networks: `loopback` adds nothing; `modelled` makes the emulators wait before every answer,
5 ms for Plex and 2 ms for Stash (`emulators.stage.MODELLED_NETWORK`), a round trip to a
NAS or another host. On loopback both plugins share this machine's cores with the
emulators, so the emulators' own CPU bounds them; "served/s" is how many requests per
second the emulators answered during the run.

Rounds: on each network the two plugins run `--rounds` times, alternating (ours first in
odd rounds, the baseline first in even ones), and each plugin's figure is its fastest run:
on a shared machine a run only ever gets slower (another process takes a core for a while),
so the fastest run is the best estimate of what the plugin itself costs (`timeit`'s rule).
A short run suffers more from one such spell than a long one, which would otherwise count
against the faster plugin. Every run's rate and each round's ratio are printed beside it.

Columns: wall seconds of the task (spawn to exit); scenes/s = scenes reaching Plex / wall;
Plex requests per scene besides image uploads, and uploads per scene; Stash GraphQL
requests and image downloads per scene; peak RSS of the plugin process (VmHWM, sampled from
/proc); plugin CPU seconds (user + system); "ours/naive" = ratio of scenes/s, same network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, emit
from bench.measure import PeakSampler, child_cpu_s, table
from emulators.host import RunResult, StashHost
from emulators.stage import LOOPBACK, MODELLED_NETWORK, PATH_MAP, Network, Stage, stage
from emulators.stash_library import StashLibrary, generate_library

NAIVE_DIR = Path(__file__).resolve().parent / "naive"
NAIVE_ID = "NaiveSync"
NETWORKS = {"loopback": LOOPBACK, "modelled": MODELLED_NETWORK}


def naive_host(st: Stage) -> StashHost:
    """The baseline installed beside Stash2Plex on the same Stash, its settings saved there."""
    st.stash.set_plugin_settings(NAIVE_ID, {"plex_url": st.plex.url, "plex_token": st.plex.token,
                                            "path_map": PATH_MAP})
    return StashHost(plugin_dir=NAIVE_DIR, connection=st.stash.connection(), stash_dir=st.host.stash_dir,
                     cookie_factory=st.stash.session_cookie, python=st.host.python, workdir=st.host.workdir)


@dataclass(frozen=True)
class Run:
    plugin: str
    network: str
    scenes: int
    synced: int
    wall: float
    cpu: float
    peak_mib: float
    plex: int
    uploads: int
    stash_gql: int
    stash_images: int

    @property
    def rate(self) -> float:
        return self.synced / self.wall

    @property
    def served(self) -> float:
        """Requests per second the emulators answered during the run."""
        return (self.plex + self.stash_gql + self.stash_images) / self.wall

    def requests(self) -> str:
        n = self.scenes
        return (f"Plex {(self.plex - self.uploads) / n:.2f} besides {self.uploads / n:.2g} upload(s), "
                f"Stash {self.stash_gql / n:.3f} GraphQL and {self.stash_images / n:.2g} image download(s)")

    def row(self, ratio: float | None) -> list[str]:
        n = self.scenes
        served = self.served
        return [self.plugin, self.network, f"{self.synced}/{n}", f"{self.wall:.1f}", f"{self.rate:.0f}",
                f"{(self.plex - self.uploads) / n:.3f}", f"{self.uploads / n:.2f}",
                f"{self.stash_gql / n:.3f}", f"{self.stash_images / n:.2f}", f"{served:.0f}",
                f"{self.peak_mib:.0f}", f"{self.cpu:.1f}", "" if ratio is None else f"{ratio:.2f}x"]


HEADER = ["plugin", "network", "synced", "wall s", "scenes/s", "Plex req/scene (no uploads)", "uploads/scene",
          "Stash GQL/scene", "Stash images/scene", "served/s", "peak MiB", "plugin CPU s", "ours/naive"]


def measure(st: Stage, plugin: str, network: str, run: Callable[[], RunResult], script: str,
            synced_of: Callable[[dict[str, Any]], int]) -> Run:
    """One task run on a fresh stage; `script` names the plugin process for the memory
    sampler, `synced_of` reads how many scenes reached Plex from the task's output."""
    st.plex.reset_log()
    st.stash.reset_log()
    cpu = child_cpu_s()
    with PeakSampler(script) as peak:
        result = run()
    cpu = child_cpu_s() - cpu
    if result.error is not None or not isinstance(result.output, dict):
        raise SystemExit(f"{plugin} failed: {result.error}\n{result.stderr[-3000:]}")
    gql = st.stash.count()
    return Run(plugin=plugin, network=network, scenes=len(st.library.scenes), synced=synced_of(result.output),
               wall=result.wall_time, cpu=cpu, peak_mib=peak.peak_mib, plex=st.plex.count(),
               uploads=st.plex.count("POST"), stash_gql=gql, stash_images=len(st.stash.requests) - gql)


def run_ours(library: StashLibrary, network: str) -> Run:
    with stage(library=library, network=NETWORKS[network],
               work_dir=Path(tempfile.mkdtemp(prefix="s2p-bench-ours-"))) as st:
        return measure(st, "Stash2Plex", network, lambda: st.task("all"), "Stash2Plex.py",
                       lambda out: out["summary"]["synced"])


def run_naive(library: StashLibrary, network: str) -> Run:
    with stage(library=library, network=NETWORKS[network],
               work_dir=Path(tempfile.mkdtemp(prefix="s2p-bench-naive-"))) as st:
        host = naive_host(st)
        return measure(st, "naive", network, lambda: host.run_task("all"), "naive_sync.py",
                       lambda out: out["synced"])


def run_rounds(library: StashLibrary, network: str, rounds: int) -> list[tuple[Run, Run]]:
    """`rounds` runs of each plugin on `network`, alternating which goes first; (ours, naive) per round."""
    out = []
    for i in range(rounds):
        if i % 2 == 0:
            ours = run_ours(library, network)
            naive = run_naive(library, network)
        else:
            naive = run_naive(library, network)
            ours = run_ours(library, network)
        print(f"(round {i + 1}/{rounds}, {network}: ours {ours.rate:.0f} scenes/s, baseline {naive.rate:.0f}, "
              f"{ours.rate / naive.rate:.2f}x)", file=sys.stderr, flush=True)
        out.append((ours, naive))
    return out


def fastest(runs: list[Run]) -> Run:
    return max(runs, key=lambda run: run.rate)


def figures(pairs: list[tuple[Run, Run]], first: bool) -> list[Figure]:
    """The Performance table's rows for one network: the rate always (each plugin's fastest
    run, every round's ratio beside it), requests and memory for the first network of the
    run (the same counts on every network; the highest peak of our runs)."""
    ours, naive = fastest([o for o, _n in pairs]), fastest([n for _o, n in pairs])
    net = NETWORKS[ours.network]
    where = ours.network if net == LOOPBACK else (
        f"{ours.network} network (+{net.plex * 1000:.0f} ms per Plex request, +{net.stash * 1000:.0f} ms per Stash request)")
    size = f"{ours.scenes:,} scenes"
    rounds = ("" if len(pairs) == 1 else
              f"; fastest of {len(pairs)} alternating runs each, the rounds' own ratios "
              + ", ".join(f"{o.rate / n.rate:.2f}x" for o, n in pairs))
    out = [Figure(f"Sync All, first sync of {size} with covers, {where}",
                  f"{ours.rate:.0f} scenes/s; baseline {naive.rate:.0f} scenes/s; **{ours.rate / naive.rate:.2f}x** "
                  f"(emulators served {ours.served:.0f} and {naive.served:.0f} requests/s{rounds})")]
    if first:
        peak = max(o.peak_mib for o, _n in pairs)
        out += [Figure(f"requests per scene, Sync All of {size}, {ours.network}",
                       f"{ours.requests()}; baseline: {naive.requests()}"),
                Figure(f"plugin peak memory, Sync All of {size}, {ours.network}",
                       f"{peak:.0f} MiB (baseline {max(n.peak_mib for _o, n in pairs):.0f} MiB)")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--networks", default="loopback,modelled", help=f"comma list of {', '.join(NETWORKS)}")
    parser.add_argument("--seed", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each plugin per network, alternating")
    args = parser.parse_args()
    networks = [n for n in args.networks.split(",") if n]
    unknown = set(networks) - set(NETWORKS)
    if unknown:
        parser.error(f"unknown network {', '.join(sorted(unknown))}")
    library = generate_library(args.scenes, seed=args.seed)
    print(f"Sync All, first sync of {args.scenes:,} scenes with covers, through the Stash host "
          f"(plugin as a subprocess), emulators in this process.", flush=True)
    for name in networks:
        net: Network = NETWORKS[name]
        print(f"(network {name}: +{net.plex * 1000:.0f} ms per Plex request, +{net.stash * 1000:.0f} ms per "
              f"Stash request)", flush=True)
    for name in networks:  # one table per network, printed as soon as its rounds ran: a long run shows progress
        pairs = run_rounds(library, name, max(1, args.rounds))
        print()
        print(table(HEADER, [row for ours, naive in pairs for row in (ours.row(ours.rate / naive.rate), naive.row(None))]),
              flush=True)
        for figure in figures(pairs, first=name == networks[0]):
            emit(figure)


if __name__ == "__main__":
    main()
