-- Schema version 4: who holds each execution lock.
-- A runner killed without releasing leaves its rows until their lease passes. These columns
-- name the holding process so that a resumer on the same host can see it is gone (no such
-- pid, or a pid recycled by a process with another start time) and take the key at once.
-- Rows written before this version, or by a process that could not read /proc, have NULLs
-- here and are freed by their lease only.
ALTER TABLE execution_locks ADD COLUMN holder_host TEXT;
ALTER TABLE execution_locks ADD COLUMN holder_boot_id TEXT;    -- /proc/sys/kernel/random/boot_id
ALTER TABLE execution_locks ADD COLUMN holder_pid_ns TEXT;     -- readlink /proc/self/ns/pid
ALTER TABLE execution_locks ADD COLUMN holder_pid INTEGER;
ALTER TABLE execution_locks ADD COLUMN holder_start_time INTEGER; -- field 22 of /proc/<pid>/stat
