-- Takedowns (issue 5): which task produced a result URL, so a claimant may name an image.
-- Only a SHA-256 of the URL is kept (the URL itself is sealed in the task's events).
CREATE TABLE result_urls
(
    url_hash text PRIMARY KEY,
    task_id  text NOT NULL
) STRICT;
