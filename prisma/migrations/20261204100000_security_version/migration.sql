-- A counter that changes with the account's credentials: a sign-in paused between its steps is bound to it.
-- AlterTable
ALTER TABLE "users" ADD COLUMN "security_version" INTEGER NOT NULL DEFAULT 0;
