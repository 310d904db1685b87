"""`empire content add|import|import-metrics|touch|show`: put tracks in the inventory, feed it accesses and revenue.

Access counts and revenue decide which tier a track belongs in; they arrive from play logs and
distributor reports as CSV (`import`), one at a time (`touch`), or over HTTP (the agent's
`/v1/content/*` endpoint). Every write is in the audit table.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from empire.cli.common import count
from empire.errors import ConfigError, NotFoundError

T = TypeVar("T")

CSV_HELP = """CSV columns (header row required):
  id           the content object id (required)
  revenue      revenue to date (or an increment with --revenue-mode add)
  accesses     number of plays/downloads to add
  at           when those accesses happened (ISO 8601 with timezone; default: now)
Empty cells are ignored. The whole file is checked first; nothing is written if any row is bad
or names an unknown id."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "content",
        help="register content and ingest access and revenue figures",
        description="The content inventory: what exists, where it lives, how it is used and what it earns.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire content add track.wav --id track-1 --persona nova --title "First light"
  empire content import plays-2026-05.csv
  empire content import royalties.csv --revenue-mode add
  empire content import-metrics youtube-2026-06.csv
  empire content touch track-1 --count 3
  empire content show track-1""",
    )
    psub = p.add_subparsers(dest="content_command", metavar="SUBCOMMAND")
    psub.required = True

    a = psub.add_parser("add", help="store a file in the hottest tier and register it")
    a.add_argument("file", type=Path)
    a.add_argument("--id", help="object id (default: the file name)")
    a.add_argument("--persona")
    a.add_argument("--title")
    a.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the example)")
    a.set_defaults(func=add)

    i = psub.add_parser("import", help="import access counts and revenue from a CSV file",
                        description="Import access counts and revenue.\n\n" + CSV_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    i.add_argument("csv", type=Path, metavar="CSV", help="file path, or - for standard input")
    i.add_argument("--revenue-mode", choices=("set", "add"), default="set",
                   help="set: the column is revenue to date (default); add: an increment")  # fmt: skip
    i.add_argument("--policy", metavar="FILE")
    i.set_defaults(func=import_csv)

    m = psub.add_parser(
        "import-metrics", help="import views, engagement and revenue per track, platform and day from a CSV file",
        description="Import performance figures (the performance_metrics table).\n\n"
        "Columns: id,platform,date,views,engagement,revenue (a header line; views and engagement may be\n"
        "empty). One row per track, platform and UTC day, the day's figures (not running totals): a row\n"
        "for a day already imported replaces it (a platform's revised figure), so importing a file\n"
        "twice changes nothing. All or nothing; the tracks' revenue to date follows. Audited.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    m.add_argument("csv", type=Path, metavar="CSV", help="file path, or - for standard input")
    m.add_argument("--policy", metavar="FILE")
    m.set_defaults(func=import_metrics)

    t = psub.add_parser("touch", help="record accesses of one object")
    t.add_argument("id")
    t.add_argument("--count", type=count(1, 1_000_000), default=1)
    t.add_argument("--at", help="ISO 8601 time with timezone (default: now)")
    t.add_argument("--policy", metavar="FILE")
    t.set_defaults(func=touch)

    v = psub.add_parser("verify", help="re-hash an object (or all, or a sample) where it lives, against the inventory",
                        description="Read the object back and compare with the inventory checksum. A match puts a "
                        "quarantined object back to active; --accept-current records the bytes as they are now. "
                        "--all or --sample N check many (after a restore of the state database): each object must be "
                        "readable from exactly one tier with its checksum; --repair records an object found intact "
                        "in exactly one other tier there and deletes intact objects' extra copies. Exit 1 when a "
                        "problem remains.",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples:\n  empire content verify track-0042\n  empire content verify --sample 200"
                               "\n  empire content verify --all --repair       # after 'empire db restore'")  # fmt: skip
    v.add_argument("id", nargs="?", help="one object (or use --all / --sample)")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every object in the inventory")
    which.add_argument("--sample", type=count(1, 10_000_000), metavar="N", help="N objects chosen at random")
    v.add_argument("--repair", action="store_true", help="with --all/--sample: make the inventory follow the bytes")
    v.add_argument("--accept-current", action="store_true",
                   help="the change was intended (re-rendered file): take the current checksum")  # fmt: skip
    v.add_argument("--policy", metavar="FILE")
    v.set_defaults(func=verify)

    s = psub.add_parser("show", help="an object's facts, and where the tier policy wants it")
    s.add_argument("id")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.add_argument("--policy", metavar="FILE")
    s.set_defaults(func=show)


def parse_time(value: str, where: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: invalid time {value!r} (use ISO 8601, e.g. 2026-05-01T10:00:00Z)") from None
    if at.tzinfo is None:
        raise ConfigError(f"{where}: time {value!r} needs a timezone (e.g. Z or +02:00)")
    return at.astimezone(UTC)


def read_rows(path: Path, now: datetime, revenue_mode: str) -> tuple[list[Any], list[Any]]:
    """Parse the CSV into access events and revenue figures; ConfigError names the line."""
    from empire.agent.tiering.inventory import AccessEvent, RevenueFigure

    events, figures = [], []
    for line, row in _rows(path):
        where = f"{path}:{line}"
        if not row.get("id"):
            raise ConfigError(f"{where}: empty id")
        if row.get("accesses"):
            try:
                count = int(row["accesses"])
            except ValueError:
                raise ConfigError(f"{where}: accesses must be a whole number, got {row['accesses']!r}") from None
            if count < 0:
                raise ConfigError(f"{where}: accesses must not be negative")
            at = parse_time(row["at"], where) if row.get("at") else now
            if count:
                events.append(_checked(AccessEvent(row["id"], at, count), now, where))
        if row.get("revenue"):
            try:
                amount = float(row["revenue"])
            except ValueError:
                raise ConfigError(f"{where}: revenue must be a number, got {row['revenue']!r}") from None
            figures.append(_checked(RevenueFigure(row["id"], amount, revenue_mode), now, where))
    return events, figures


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: cell}) of an import CSV (or standard input), read as a stream within the
    CSV limits of `empire.boundedio`; the header is checked first."""
    from empire.boundedio import MAX_CSV_BYTES, bounded_lines, open_bounded_text

    with open_bounded_text(path, MAX_CSV_BYTES, "CSV file") as fh:
        reader = csv.DictReader(bounded_lines(fh, str(path)))
        try:
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "id" not in fields:
                raise ConfigError(
                    f"{path}: the header row needs an 'id' column (found: {', '.join(fields) or 'nothing'})"
                )
            unknown = set(fields) - {"id", "revenue", "accesses", "at"}
            if unknown:
                raise ConfigError(
                    f"{path}: unknown columns {', '.join(sorted(unknown))} (valid: id, revenue, accesses, at)"
                )
            for raw in reader:
                yield reader.line_num, {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        except csv.Error as exc:
            raise ConfigError(f"{path}:{reader.line_num}: {exc}") from None
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise ConfigError(f"{path}: cannot read CSV file: {exc}") from None


def _checked(item: T, now: datetime, where: str) -> T:
    """`item` if the inventory's `ingest_error` (the check every ingestion path shares) passes it;
    its field names become the CSV's column names."""
    from empire.agent.tiering.inventory import ingest_error

    if (why := ingest_error(item, now)) is not None:
        raise ConfigError(f"{where}: {why.replace('amount:', 'revenue:', 1).replace('count:', 'accesses:', 1)}")
    return item


def add(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.agent.tiering.inventory import ContentObject
    from empire.config.settings import load_settings

    path: Path = args.file
    try:
        found = path.is_file()
    except OSError as exc:  # a name too long for the file system, ...
        raise ConfigError(f"{str(path)[:120]}: {exc.strerror or exc}") from None
    if not found:
        raise ConfigError(f"{path}: no such file")
    oid = args.id or path.name

    async def chunks():
        with path.open("rb") as f:
            while block := await anyio.to_thread.run_sync(f.read, 1024 * 1024):
                yield block

    async def go() -> None:
        async with open_tiering(load_settings(), args.policy) as tc:
            if not await tc.inventory.missing([oid]):
                raise ConfigError(f"content object {oid!r} exists already; choose another --id")
            tier = tc.policy.tiers[0].name
            loc = tc.backend.location_for(oid)
            size, checksum = await tc.backend.put(tier, loc, chunks())
            now = tc.clock.now()
            obj = ContentObject(id=oid, size=size, checksum=checksum, tier=tier, location=loc, created_at=now,
                                tier_since=now, persona=args.persona, title=args.title)  # fmt: skip
            await tc.inventory.register(obj, actor="cli")
            print(f"{oid}: {size} bytes in {tier} ({checksum[:19]}...)")

    anyio.run(go)
    return 0


def import_csv(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.config.settings import load_settings

    async def go() -> None:
        async with open_tiering(load_settings(), args.policy) as tc:
            now = tc.clock.now()
            events, figures = read_rows(args.csv, now, args.revenue_mode)
            missing = await tc.inventory.missing({e.object_id for e in events} | {f.object_id for f in figures})
            if missing:
                shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                raise ConfigError(f"{args.csv}: unknown content object(s): {shown}; nothing imported")
            n_access = await tc.inventory.record_access(events, tc.policy.access_half_life, actor="cli:import", at=now)
            n_rev = await tc.inventory.record_revenue(figures, actor="cli:import", at=now)
            print(f"{args.csv}: {sum(e.count for e in events)} accesses for {n_access} objects, "
                  f"revenue for {n_rev} objects ({args.revenue_mode})")  # fmt: skip

    anyio.run(go)
    return 0


def import_metrics(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.pools.performance import parse_csv
    from empire.agent.tiering.context import open_tiering
    from empire.boundedio import MAX_CSV_BYTES, read_bounded_text
    from empire.config.settings import load_settings
    from empire.state.performance import SqlPerformanceStore

    # The same limits and one-line errors as every CSV a user names (missing file, /dev/zero, not UTF-8).
    text = read_bounded_text(args.csv, MAX_CSV_BYTES, "CSV file")

    async def go() -> None:
        async with open_tiering(load_settings(), args.policy) as tc:
            now = tc.clock.now()
            figures = parse_csv(text, now.date(), str(args.csv))
            try:
                n = await SqlPerformanceStore(tc.db).record(figures, actor="cli:import-metrics", at=now, source="csv")
            except NotFoundError as exc:
                raise ConfigError(f"{args.csv}: {exc}; nothing imported") from None
            print(f"{args.csv}: {n} figures for {len({f.object_id for f in figures})} tracks")

    anyio.run(go)
    return 0


def touch(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.agent.tiering.inventory import AccessEvent
    from empire.config.settings import load_settings

    async def go() -> None:
        async with open_tiering(load_settings(), args.policy) as tc:
            now = tc.clock.now()
            at = parse_time(args.at, "--at") if args.at else now
            event = _checked(AccessEvent(args.id, at, args.count), now, "--at")
            await tc.inventory.record_access([event], tc.policy.access_half_life, actor="cli:touch", at=now)
            obj = await tc.inventory.get(args.id)
            print(f"{args.id}: {args.count} access(es) recorded; decayed count {obj.access_score:.2f}, tier {obj.tier}")

    anyio.run(go)
    return 0


def verify(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.config.settings import load_settings

    if args.all or args.sample:
        if args.id or args.accept_current:
            raise ConfigError("give an object id, or --all / --sample (--accept-current takes one id)")
        return _verify_many(args)
    if not args.id:
        raise ConfigError("give an object id, or --all, or --sample N")
    if args.repair:
        raise ConfigError("--repair goes with --all or --sample")

    async def go() -> int:
        async with open_tiering(load_settings(), args.policy) as tc:
            obj = await tc.inventory.get(args.id)
            if obj.status == "moving":
                raise ConfigError(f"{obj.id} is being moved; try again after the move (or 'empire tiers apply')")
            current = await tc.backend.checksum(obj.tier, obj.location)
            now = tc.clock.now()
            if current == obj.checksum:
                if obj.status != "active":
                    await tc.inventory.set_status(obj.id, "active", now, actor="cli:verify", note="checksum matches")
                print(f"{obj.id}: intact in {obj.tier} ({current[:19]}...); status active")
                return 0
            if args.accept_current:
                await tc.inventory.accept_checksum(obj.id, current, now, actor="cli:verify")
                print(f"{obj.id}: accepted the current bytes ({current[:19]}...); status active")
                return 0
            print(f"{obj.id}: MISMATCH in {obj.tier}: inventory {obj.checksum}, stored {current} "
                  f"(status {obj.status}); use --accept-current if the change was intended")  # fmt: skip
            return 1

    return anyio.run(go)


def _verify_many(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.agent.tiering.verify import every_object, verify_objects
    from empire.config.settings import load_settings

    async def go() -> Any:
        async with open_tiering(load_settings(), args.policy) as tc:
            objects = every_object(tc.inventory) if args.all else await tc.inventory.sample(args.sample)
            return await verify_objects(objects, tc.backend, tc.inventory, tc.clock.now(), repair=args.repair)

    report = anyio.run(go)
    for f in report.findings:
        print(f"{f.object_id}: {f.problem}{' (repaired)' if f.repaired else ''}: {f.detail}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items()))
    print(f"verify: {report.checked:,} checked, {report.intact:,} intact in exactly one tier"
          + (f"; {counts}" if counts else "") + ("; FAILED" if report.problems else ""))  # fmt: skip
    return 1 if report.problems else 0


def show(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.agent.tiering.describe import describe_object
    from empire.config.settings import load_settings
    from empire.state.publications import publications

    async def go() -> dict[str, Any]:
        async with open_tiering(load_settings(), args.policy, readonly=True) as tc:
            obj = await tc.inventory.get(args.id)
            out = describe_object(obj, tc.policy, tc.clock.now())
            pubs = await publications(tc.db, obj.id)
            if pubs:
                out["publications"] = pubs
            return out

    out = anyio.run(go)
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            if k == "publications":
                for p in v:
                    print(f"{'published':>17}: {p['platform']} {p['state']} {p.get('url') or ''} "
                          f"{p.get('error') or ''}".rstrip())  # fmt: skip
            else:
                print(f"{k:>17}: {v}")
    return 0
