-- When a role last changed (its description, or what it permits): its version, which the admin API sends as its ETag.
-- AlterTable
ALTER TABLE "roles" ADD COLUMN "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP;
