"""``python -m netcourse COMMAND``: doctor, record, images, bench, html, binder, layers, timing, learner-copy."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check that this machine can run the course")
    rec = sub.add_parser("record", help="re-record the shipped captures (needs root or CAP_NET_RAW)")
    rec.add_argument("names", nargs="*", help="scenarios to record (default: all)")
    bench_parser = sub.add_parser("bench", help="print the benchmark table")
    bench_parser.add_argument("--idle-seconds", type=float, default=3600.0,
                              help="how long the idle chat socket is held (default: an hour; it runs beside the rest)")
    sub.add_parser("images", help="regenerate the pictures in images/ from shipped data")
    sub.add_parser("html", help="export the executed notebooks to static HTML in build/html/")
    sub.add_parser("binder", help="print the Binder badge for this repository's git remote")
    sub.add_parser("layers", help="draw the package's floors and the imports between them, from the code")
    timing = sub.add_parser("timing", help="each notebook's time, section by section (--write restates the top line)")
    timing.add_argument("--write", action="store_true", help="rewrite each notebook's stated time from the estimate")
    copy = sub.add_parser("learner-copy", help="create my-notebooks/, the learner's copy (outputs cleared; never overwritten)")
    copy.add_argument("--fresh", metavar="NB", help="a clean copy of one notebook (its number), keeping the old one")
    return parser


def _doctor(args) -> int:
    from .tools.doctor import main as doctor

    return doctor()


def _record(args) -> int:
    from .errors import NetcourseError
    from .experiments.registry import record_all
    from .traffic.recordings import RECORDINGS

    try:
        done = record_all(names=args.names or None)
    except NetcourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Recorded {len(done)} scenario(s) into {RECORDINGS}: {', '.join(done)}")
    print("Now re-execute the notebooks (make execute) so their stored outputs match.")
    return 0


def _images(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .course.images import generate_all

    for path in generate_all():
        print(f"wrote {path}")
    return 0


def _html(args) -> int:
    from .tools.publish import export_html

    paths = export_html()
    print(f"wrote {len(paths)} pages into {paths[0].parent}; open {paths[0]}")
    return 0


def _binder(args) -> int:
    from .tools.publish import binder_url

    url = binder_url()
    if url is None:
        print("No GitHub remote named 'origin' here, so no Binder link. Once the course is on GitHub:\n"
              "  https://mybinder.org/v2/gh/OWNER/REPO/HEAD?labpath=notebooks%2F00_start_here.ipynb")
        return 1
    print(f"[![Binder](https://mybinder.org/badge_logo.svg)]({url})")
    return 0


def _bench(args) -> int:
    from .tools.bench import main as bench

    return bench(idle_seconds=args.idle_seconds)


def _learner_copy(args) -> int:
    from .tools.learnercopy import main as learner_copy

    return learner_copy(args.fresh)


def _timing(args) -> int:
    import json
    from pathlib import Path

    from .course.timing import CORE_LIMIT_MIN, estimate, restate, sections

    over = 0
    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        est = estimate(nb)
        over += est.core > CORE_LIMIT_MIN
        print(f"{path.stem}: core {est.core} min, going deeper {est.deeper} min")
        for part in sections(nb):
            print(f"    {part.minutes:5.1f} min  {'(deeper) ' if part.deeper else ''}{part.title}")
        if args.write and restate(nb):
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"    restated: {est.line()}")
    print(f"{over} notebook(s) over {CORE_LIMIT_MIN} min on the core path")
    return 0


def _layers(args) -> int:
    from .tools.layers import main as layers

    return layers()


COMMANDS = {"doctor": _doctor, "timing": _timing, "layers": _layers, "learner-copy": _learner_copy, "record": _record, "images": _images, "html": _html, "binder": _binder,
            "bench": _bench}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
