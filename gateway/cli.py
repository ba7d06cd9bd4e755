"""`tapstack gateway ...` commands."""
import click


@click.group()
def cli():
    """The gateway program."""


@cli.command("check")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="The gateway's data directory (default: $TAPSTACK_HOME/gateway).")
def check(data_dir):
    """Prove the books balance and every balance matches its postings."""
    import sqlite3
    from pathlib import Path

    from gateway import ledger
    from gateway.config import Config, default_data_dir
    from gateway.store import Store, StoreError

    db_path = Config(Path(data_dir) if data_dir else default_data_dir()).db_path
    if not db_path.is_file():
        raise click.ClickException(f"no gateway database at {db_path}")
    try:
        store = Store(db_path, migrate=False)
        try:
            notes = store.migration_problems()
            if any(n.startswith("migration 0001_") and "not applied" in n for n in notes):
                raise click.ClickException(f"{db_path} has no ledger yet (migration 0001_ledger.sql is not applied)")
            with store.read() as tx:
                report = ledger.check(tx)
        finally:
            store.close()
    except (sqlite3.Error, StoreError) as e:
        raise click.ClickException(f"cannot read {db_path}: {e}")
    for line in ledger.report_lines(report, str(db_path)):
        click.echo(line)
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    if not report.ok:
        raise SystemExit(1)
