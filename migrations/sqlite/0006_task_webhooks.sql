-- The holder's task list shows each task's webhook: whether one was asked for, how many
-- attempts were made, and whether it was delivered or given up on (with the last error,
-- which never carries the URL).
ALTER TABLE rm_tasks ADD COLUMN webhook text;
ALTER TABLE rm_tasks ADD COLUMN webhook_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE rm_tasks ADD COLUMN webhook_error text;

-- The `tasks` projection is replayed from the start to fill the new columns.
DELETE FROM rm_tasks;
DELETE FROM rm_image_totals;
DELETE FROM projection_checkpoints WHERE name = 'tasks';
