"""Keep each report's primary-metric value in its own column.

Early stopping reduces the study's learning curves on every report (the median rule's
running averages, successive halving's values at a rung). Reading the value from a REAL
column spares that SQL parsing each report's JSON.
Existing reports are filled in from their JSON, study by study (the primary metric is
the first metric of the study's spec).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("measurements", sa.Column("value", sa.Float, nullable=True))
    bind = op.get_bind()
    studies = bind.execute(sa.text("SELECT id, spec_json FROM studies")).all()
    for study_id, spec_json in studies:
        metric = json.loads(spec_json)["metrics"][0]["name"]
        if bind.dialect.name == "postgresql":
            extract = "CAST(CAST(metrics_json AS JSON) ->> :key AS DOUBLE PRECISION)"
            key = metric
        else:
            extract = "CAST(json_extract(metrics_json, :key) AS REAL)"
            key = f'$."{metric}"'
        bind.execute(
            sa.text(f"UPDATE measurements SET value = {extract} WHERE study_id = :sid"),
            {"key": key, "sid": study_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("value")
