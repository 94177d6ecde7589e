-- The latest live resize of a sandbox (PATCH with resources): its generation, target,
-- status and error, as the JSON of `resource_resize` in SandboxInfo. NULL before the first.
ALTER TABLE sandboxes ADD COLUMN resource_resize TEXT;
