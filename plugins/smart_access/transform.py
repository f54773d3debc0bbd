"""Command line: one `dbt build` (or a freshness check), results recorded in ops.

    python -m smart_access.transform                 # build everything
    python -m smart_access.transform --select marts  # part of the graph
    python -m smart_access.transform --full-refresh
    python -m smart_access.transform --unit-tests    # also dbt's unit tests (CI runs them)
    python -m smart_access.transform --freshness     # dbt source freshness

Exit status 0 when everything passed, 1 when a model or test failed (or a source is
past its error threshold), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from smart_access.dbt import DbtError, run_dbt_build, run_source_freshness


def _parse_vars(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(
            f'--vars must be a JSON object, e.g. \'{{"reference_at": "2026-01-01T00:00:00Z"}}\''
            f" (got {text!r})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--vars must be a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smart_access.transform", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--select", nargs="+", help="dbt node selection (default: everything)")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild incremental models")
    parser.add_argument("--vars", type=_parse_vars, help="dbt vars as a JSON object")
    parser.add_argument("--target", help="profiles.yml target (default $DBT_TARGET or stack)")
    parser.add_argument("--freshness", action="store_true", help="run dbt source freshness")
    parser.add_argument(
        "--unit-tests",
        action="store_true",
        help="also run dbt's unit tests (left out of the 15-minute cycle; make test runs them)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.freshness:
            fresh = run_source_freshness(target=args.target)
            for source in fresh.sources:
                age = (
                    "never loaded"
                    if source.age_seconds is None
                    else f"{source.age_seconds:.0f}s old"
                )
                print(f"{source.source_name}.{source.table_name:<16} {source.status:<6} {age}")
            return 0 if fresh.success else 1
        result = run_dbt_build(
            select=args.select,
            full_refresh=args.full_refresh,
            vars=args.vars,
            target=args.target,
            unit_tests=args.unit_tests,
        )
    except DbtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, rows in sorted(result.rows_affected.items()):
        print(f"  {name:<40} {rows:>10} rows")
    print(
        f"dbt build {'OK' if result.success else 'FAILED'} in {result.elapsed_seconds:.1f}s: "
        f"{result.tests_passed} tests passed, {result.tests_failed} failed, "
        f"{result.tests_warned} warned (invocation {result.invocation_id})"
    )
    for name in result.failed_nodes:
        print(f"  failed: {name}", file=sys.stderr)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
