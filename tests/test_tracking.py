"""The change-log trigger records every change with its key, old row and new row."""

from __future__ import annotations

import pytest

from herald.db import connect
from herald.errors import PermanentError
from herald.tracking import track
from tests.helpers import sql

pytestmark = pytest.mark.usefixtures("herald_db")


def changes(url):
    return sql(
        url,
        "SELECT table_name, operation, row_pk, old_row, new_row FROM herald.change_log ORDER BY id",
    )


def test_insert_update_and_delete_are_recorded_with_the_primary_key(herald_db):
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
    sql(herald_db, "UPDATE classes SET seats = 12 WHERE title = 'Yoga'")
    sql(herald_db, "DELETE FROM classes WHERE title = 'Yoga'")
    ins, upd, dele = changes(herald_db)
    assert (ins["table_name"], ins["operation"], ins["row_pk"]) == (
        "public.classes",
        "INSERT",
        {"id": 1},
    )
    assert ins["old_row"] is None and ins["new_row"]["title"] == "Yoga"
    assert upd["old_row"]["seats"] == 10 and upd["new_row"]["seats"] == 12
    assert dele["operation"] == "DELETE" and dele["new_row"] is None and dele["old_row"]["id"] == 1


def test_a_composite_primary_key_is_recorded_whole(herald_db):
    sql(
        herald_db,
        "CREATE TABLE bookings (member int, class int, note text, PRIMARY KEY (member, class))",
    )
    with connect(herald_db) as conn:
        track(conn, "bookings")
    sql(herald_db, "INSERT INTO bookings VALUES (3, 7, 'hi')")
    assert changes(herald_db)[-1]["row_pk"] == {"member": 3, "class": 7}


def test_tracking_twice_records_each_change_once(herald_db):
    with connect(herald_db) as conn:
        track(conn, "classes")
        track(conn, "classes")
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Pilates')")
    assert len(changes(herald_db)) == 1


def test_a_table_without_a_primary_key_is_refused_with_a_clear_error(herald_db):
    sql(herald_db, "CREATE TABLE logbook (line text)")
    with connect(herald_db) as conn, pytest.raises(PermanentError, match="has no primary key"):
        track(conn, "logbook")


def test_a_missing_table_is_named(herald_db):
    with connect(herald_db) as conn, pytest.raises(PermanentError, match="'nope' does not exist"):
        track(conn, "nope")


def test_herald_track_command_attaches_the_trigger(herald_db, monkeypatch, capsys):
    from herald.cli.main import main

    sql(herald_db, "CREATE TABLE rooms (id int PRIMARY KEY, name text)")
    monkeypatch.setenv("HERALD_DATABASE_URL", herald_db)
    assert main(["track", "rooms"]) == 0
    sql(herald_db, "INSERT INTO rooms VALUES (1, 'Studio')")
    assert changes(herald_db)[-1]["table_name"] == "public.rooms"
    assert main(["track", "missing_table"]) == 1
    assert "does not exist" in capsys.readouterr().err
