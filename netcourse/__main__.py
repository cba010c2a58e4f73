"""``python -m netcourse COMMAND``: doctor, record, images, bench."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check that this machine can run the course")
    rec = sub.add_parser("record", help="re-record the shipped captures (needs root or CAP_NET_RAW)")
    rec.add_argument("names", nargs="*", help="scenarios to record (default: all)")
    sub.add_parser("bench", help="print the benchmark table")
    sub.add_parser("images", help="regenerate the pictures in images/ from shipped data")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from .tools.doctor import main as doctor

        return doctor()
    if args.command == "record":
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
    if args.command == "images":
        import matplotlib

        matplotlib.use("Agg")
        from .course.images import generate_all

        for path in generate_all():
            print(f"wrote {path}")
        return 0
    if args.command == "bench":
        from .tools.bench import main as bench

        return bench()
    return 2


if __name__ == "__main__":
    sys.exit(main())
