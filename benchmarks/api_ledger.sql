-- A ledger of N jobs for `python -m benchmarks.api`, generated in PostgreSQL.
-- Half as many notifications and changes (each notification has two jobs: enrich then
-- email, or two emails). Routes are skewed as real ones are: one takes 40%, the rarest
-- ("audit") 0.5%. Statuses: 90% complete, 4% pending, 2% failed, 0.5% running, the rest
-- canceled or superseded. Times: one job a second, the newest now.

INSERT INTO herald.change_log (id, table_name, operation, row_pk, old_row, new_row, changed_at,
                               claimed_at, outcome)
SELECT g, (ARRAY['public.classes', 'public.members', 'public.orders', 'public.invoices'])[1 + g %% 4],
       'UPDATE', jsonb_build_object('id', g), '{}'::jsonb, jsonb_build_object('id', g),
       now() - make_interval(secs => %(jobs)s - 2 * g), now() - make_interval(secs => %(jobs)s - 2 * g),
       'routed'
  FROM generate_series(1, %(jobs)s / 2) g;
SELECT setval('herald.change_log_id_seq', %(jobs)s / 2);

INSERT INTO herald.notifications (id, route, table_name, row_pk, change_ids, recipients, ai,
                                  created_at)
SELECT g,
       CASE WHEN r < 400 THEN 'classes' WHEN r < 650 THEN 'members' WHEN r < 800 THEN 'orders'
            WHEN r < 900 THEN 'invoices' WHEN r < 950 THEN 'orders-urgent'
            WHEN r < 980 THEN 'members-ai' WHEN r < 995 THEN 'vip' ELSE 'audit' END,
       (ARRAY['public.classes', 'public.members', 'public.orders', 'public.invoices'])[1 + g %% 4],
       jsonb_build_object('id', g), ARRAY[g::bigint], ARRAY['ops@example.com'], g %% 3 = 0,
       now() - make_interval(secs => %(jobs)s - 2 * g)
  FROM generate_series(1, %(jobs)s / 2) g,
       LATERAL (SELECT (g::bigint * 7919) %% 1000 AS r) skew;
SELECT setval('herald.notifications_id_seq', %(jobs)s / 2);

INSERT INTO herald.jobs (id, message_id, actor, queue, status, attempts, notification_id,
                         change_id, recipient, unique_key, priority, created_at, published_at,
                         started_at, finished_at, last_error)
SELECT g, md5(g::text)::uuid,
       CASE WHEN g %% 10 < 3 THEN 'enrich' ELSE 'send_email' END,
       CASE WHEN g %% 10 < 3 THEN 'enrich' ELSE 'email' END,
       s.status,
       CASE WHEN s.status = 'failed' THEN 6 ELSE 1 END,
       (g + 1) / 2, (g + 1) / 2,
       CASE WHEN g %% 10 < 3 THEN NULL ELSE 'user' || (g %% 5000) || '@example.com' END,
       NULL, 5,
       now() - make_interval(secs => %(jobs)s - g),
       now() - make_interval(secs => %(jobs)s - g),
       CASE WHEN s.status <> 'pending' THEN now() - make_interval(secs => %(jobs)s - g) END,
       CASE WHEN s.status NOT IN ('pending', 'running')
            THEN now() - make_interval(secs => %(jobs)s - g) + interval '200 milliseconds' END,
       CASE WHEN s.status = 'failed'
            THEN 'SMTPRecipientsRefused: 550 5.1.1 mailbox user' || (g %% 5000) || ' unavailable' END
  FROM generate_series(1, %(jobs)s) g,
       LATERAL (SELECT CASE WHEN g %% 100 < 2 THEN 'failed' WHEN g %% 100 < 6 THEN 'pending'
                            WHEN g %% 200 = 7 THEN 'running' WHEN g %% 100 < 8 THEN 'canceled'
                            WHEN g %% 100 < 10 THEN 'superseded' ELSE 'complete' END AS status) s;
SELECT setval('herald.jobs_id_seq', %(jobs)s);
