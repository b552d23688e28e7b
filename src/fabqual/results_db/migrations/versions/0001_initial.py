"""The first schema: racks, runs, per-link verdicts, rows, metrics, inventory, known issues.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "racks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("place", sa.String(200)),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("first_seen", TZ, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_key", sa.String(100), nullable=False, unique=True),
        sa.Column("rack_id", sa.Integer, sa.ForeignKey("racks.id"), nullable=False, index=True),
        sa.Column("topology", sa.String(200), nullable=False),
        sa.Column("topology_file", sa.Text, nullable=False),
        sa.Column("topology_hash", sa.String(64)),
        sa.Column("profile", sa.String(200), nullable=False),
        sa.Column("versions_hash", sa.String(64), nullable=False),
        sa.Column("fabqual_version", sa.String(50), nullable=False),
        sa.Column("started", TZ, nullable=False, index=True),
        sa.Column("finished", TZ),
        sa.Column("duration_s", sa.Float),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("strict", sa.Boolean, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("imported", TZ, nullable=False),
    )
    op.create_table(
        "run_links",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("link_type", sa.String(50), primary_key=True),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("error", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
    )
    op.create_table(
        "rows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("nodeid", sa.Text, nullable=False),
        sa.Column("link", sa.String(200)),
        sa.Column("link_type", sa.String(50)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("key", sa.Text, nullable=False, index=True),
        sa.Column("test", sa.Text, nullable=False),
        sa.Column("link", sa.String(200), nullable=False),
        sa.Column("link_type", sa.String(50), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
        sa.Column("comparison", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("margin", sa.Float),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("threshold_source", sa.Text, nullable=False),
    )
    op.create_table(
        "inventory",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("item", sa.String(300), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "known_issues",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue", sa.String(100), nullable=False),
        sa.Column("file_version", sa.Integer, nullable=False),
        sa.Column("test_pattern", sa.Text, nullable=False),
        sa.Column("message_pattern", sa.Text, nullable=False),
        sa.Column("intermittent", sa.Boolean, nullable=False),
        sa.Column("tracker", sa.Text, nullable=False),
        sa.Column("waiver", sa.Text),
        sa.Column("loaded", TZ, nullable=False),
        sa.UniqueConstraint("issue", "file_version"),
    )


def downgrade() -> None:
    for table in ("known_issues", "inventory", "metrics", "rows", "run_links", "runs", "racks"):
        op.drop_table(table)
