-- The compose stack's sample application: two tables Herald tracks, and a few changes,
-- so that `docker compose up` shows an email in Mailpit within a minute. Run by the
-- `sample-app` service as the application's own user, after `herald db upgrade`. The
-- routes of herald.example.toml (mounted as the stack's herald.toml) match these tables.

CREATE TABLE IF NOT EXISTS members (
    id serial PRIMARY KEY,
    first_name text NOT NULL,
    last_name text,
    email text,
    phone text,
    coordinator_email text,
    joined_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS classes (
    id serial PRIMARY KEY,
    title text NOT NULL,
    coach text,
    seats int NOT NULL,
    status text NOT NULL DEFAULT 'open',
    starts_at timestamptz NOT NULL DEFAULT now() + interval '1 day'
);

SELECT herald.track('members');
SELECT herald.track('classes');

-- A new member (route new-members) and a class that fills up (route class-changes).
INSERT INTO members (first_name, last_name, email, phone)
VALUES ('Ada', 'Lovelace', 'ada@example.org', '+44 20 7946 0958');
INSERT INTO classes (title, coach, seats) VALUES ('Welding basics', 'Grace', 12);
UPDATE classes SET seats = 9 WHERE title = 'Welding basics';
