-- The worker's heartbeat renews the leases it holds (`WHERE lease_owner = $1`) every tick;
-- without an index that read every row of the work queue, so its cost grew with the
-- number of tasks in flight (the imagine benchmark's sequential scans of task_work).
CREATE INDEX task_work_lease_owner ON task_work (lease_owner) WHERE lease_owner IS NOT NULL;
