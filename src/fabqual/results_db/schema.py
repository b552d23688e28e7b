"""The tables of the results database, as SQLAlchemy Core metadata.

The migrations in ``migrations/versions`` create exactly these tables; a
self-test compares the two so they never drift apart. Contexts, tags and
patterns are stored as JSON text, which SQLite and PostgreSQL both index and
compare the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

racks = Table(
    "racks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("place", String(200)),  # the labgrid place that hands the rack out, if any
    Column("tags", Text, nullable=False, default="{}"),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_key", String(100), nullable=False, unique=True),  # the results file's run.id
    Column("rack_id", Integer, ForeignKey("racks.id"), nullable=False, index=True),
    Column("topology", String(200), nullable=False),
    Column("topology_file", Text, nullable=False, default=""),
    Column("topology_hash", String(64)),
    Column("profile", String(200), nullable=False, default=""),
    Column("versions_hash", String(64), nullable=False),  # kernel, drivers, firmware, tools, fabqual
    Column("fabqual_version", String(50), nullable=False, default=""),
    Column("started", DateTime(timezone=True), nullable=False, index=True),
    Column("finished", DateTime(timezone=True)),
    Column("duration_s", Float),
    Column("host", String(200), nullable=False, default=""),
    Column("command", Text, nullable=False, default=""),
    Column("verdict", String(20), nullable=False),
    Column("strict", Boolean, nullable=False, default=False),
    Column("source", Text, nullable=False, default=""),
    Column("imported", DateTime(timezone=True), nullable=False),
)

run_links = Table(
    "run_links",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("link_type", String(50), primary_key=True),
    Column("verdict", String(20), nullable=False),
    Column("passed", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("error", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
)

rows = Table(
    "rows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("nodeid", Text, nullable=False),
    Column("link", String(200)),
    Column("link_type", String(50)),
    Column("outcome", String(20), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("duration_s", Float, nullable=False, default=0.0),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("key", Text, nullable=False, index=True),  # results.run.metric_key: link/metric[context]
    Column("test", Text, nullable=False, default=""),
    Column("link", String(200), nullable=False),
    Column("link_type", String(50), nullable=False),
    Column("metric", String(100), nullable=False),
    Column("context", Text, nullable=False, default="{}"),
    Column("value", Float, nullable=False),
    Column("unit", String(50), nullable=False, default=""),
    Column("comparison", String(2), nullable=False),
    Column("threshold", Float),
    Column("margin", Float),
    Column("passed", Boolean, nullable=False),
    Column("threshold_source", Text, nullable=False, default=""),
)

inventory = Table(
    "inventory",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("node", String(200), nullable=False),
    Column("item", String(300), nullable=False),  # kernel, rdma.rxe0.fw_ver, tool.fio, ...
    Column("value", Text, nullable=False),
)

known_issues = Table(
    "known_issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue", String(100), nullable=False),
    Column("file_version", Integer, nullable=False),
    Column("test_pattern", Text, nullable=False),
    Column("message_pattern", Text, nullable=False, default=""),
    Column("intermittent", Boolean, nullable=False, default=False),
    Column("tracker", Text, nullable=False, default=""),
    Column("waiver", Text),  # JSON {reason, by, until} when the issue is explicitly waived
    Column("loaded", DateTime(timezone=True), nullable=False),
    UniqueConstraint("issue", "file_version"),
)
