-- Login attempts per client address per fixed window, shared by every
-- server on the store so that the per-address limit holds across a pool.
CREATE TABLE login_windows (
    address TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (address, window_start)
);
CREATE INDEX login_windows_by_start ON login_windows (window_start);
