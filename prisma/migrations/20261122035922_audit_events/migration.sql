-- CreateEnum
CREATE TYPE "audit_outcome" AS ENUM ('success', 'failure');

-- CreateEnum
CREATE TYPE "audit_actor_type" AS ENUM ('user', 'client', 'admin', 'system');

-- CreateTable
CREATE TABLE "audit_events" (
    "id" UUID NOT NULL,
    "occurred_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "action" TEXT NOT NULL,
    "outcome" "audit_outcome" NOT NULL,
    "actor_type" "audit_actor_type" NOT NULL,
    "actor_id" TEXT,
    "subject_user_id" UUID,
    "subject_email" TEXT,
    "client_id" TEXT,
    "ip" TEXT,
    "user_agent" TEXT,
    "detail" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "audit_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "audit_events_occurred_at_idx" ON "audit_events"("occurred_at");

-- CreateIndex
CREATE INDEX "audit_events_action_occurred_at_idx" ON "audit_events"("action", "occurred_at");

-- CreateIndex
CREATE INDEX "audit_events_subject_user_id_occurred_at_idx" ON "audit_events"("subject_user_id", "occurred_at");

-- CreateIndex
CREATE INDEX "audit_events_subject_email_occurred_at_idx" ON "audit_events"("subject_email", "occurred_at");
