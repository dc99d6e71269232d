-- The request an audit event was recorded in (its X-Request-Id), to find the request's log lines.
-- AlterTable
ALTER TABLE "audit_events" ADD COLUMN "request_id" TEXT;
