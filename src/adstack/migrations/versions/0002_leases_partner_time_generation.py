"""report job leases, conversions.partner_time, audiences.generation, AUTOINCREMENT ids on SQLite

Revision ID: 0002
Revises: 0001_initial
Create Date: 2026-12-05 10:46:31.284328
"""
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import adstack.core.db


revision: str = '0002'
down_revision: str | None = '0001_initial'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose ids are never reused once deleted: AUTOINCREMENT on SQLite (a rebuild of the table there);
# PostgreSQL's sequences never hand out an id twice anyway.
AUTOINCREMENT_TABLES = ('publishers', 'ad_spaces')


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'

    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partner_time', adstack.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_conversions_app_partner_time', ['app_id', 'partner_time'], unique=False, sqlite_where=sa.text('partner_time IS NOT NULL'), postgresql_where=sa.text('partner_time IS NOT NULL'))

    with op.batch_alter_table('report_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('lease_until', adstack.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_report_jobs_pending', ['status', 'lease_until'], unique=False)

    # Existing audiences get a generation as a new one does (audiences.models.new_generation: a random token).
    op.add_column('audiences', sa.Column('generation', sa.String(length=32), nullable=True))
    bind = op.get_bind()
    ids = bind.execute(sa.text('SELECT id FROM audiences')).scalars().all()
    if ids:
        bind.execute(sa.text('UPDATE audiences SET generation = :generation WHERE id = :id'),
                     [{'id': id_, 'generation': uuid.uuid4().hex} for id_ in ids])
    with op.batch_alter_table('audiences', schema=None, recreate='always' if sqlite else 'auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.alter_column('generation', existing_type=sa.String(length=32), nullable=False)

    if sqlite:
        for table in AUTOINCREMENT_TABLES:
            with op.batch_alter_table(table, schema=None, recreate='always',
                                      table_kwargs={'sqlite_autoincrement': True}):
                pass


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for table in AUTOINCREMENT_TABLES:
            with op.batch_alter_table(table, schema=None, recreate='always',
                                      table_kwargs={'sqlite_autoincrement': False}):
                pass

    with op.batch_alter_table('audiences', schema=None, recreate='always' if sqlite else 'auto',
                              table_kwargs={'sqlite_autoincrement': False}) as batch_op:
        batch_op.drop_column('generation')

    with op.batch_alter_table('report_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_report_jobs_pending')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_token')

    with op.batch_alter_table('conversions', schema=None) as batch_op:
        batch_op.drop_index('ix_conversions_app_partner_time', sqlite_where=sa.text('partner_time IS NOT NULL'), postgresql_where=sa.text('partner_time IS NOT NULL'))
        batch_op.drop_column('partner_time')
