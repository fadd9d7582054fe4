-- Compliance export jobs: a time window and a scope (all rooms, some rooms, custodians or
-- a legal hold) written in one format under {data_dir}/exports/<id>/ with a signed
-- manifest. `scope` (JSON) names the rooms and custodians; `progress` (JSON) holds the
-- counts and the resume state committed after each room, so a job interrupted by a crash
-- continues where it stopped.
CREATE TABLE export_jobs (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL CHECK (format IN ('jsonl', 'csv', 'eml', 'xml')),
    window_from BIGINT NOT NULL,
    window_until BIGINT NOT NULL,
    scope TEXT NOT NULL,
    hold_id TEXT REFERENCES legal_holds (id),
    include_files BOOLEAN NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    progress TEXT NOT NULL,
    error TEXT,
    -- The schedule that started it (NULL: a compliance officer did).
    schedule TEXT,
    created_by TEXT REFERENCES users (id),
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    -- Refreshed while a worker runs it; a stale one means the worker died.
    heartbeat_at BIGINT
);
CREATE INDEX export_jobs_status ON export_jobs (status);
CREATE INDEX export_jobs_schedule ON export_jobs (schedule, window_until);
