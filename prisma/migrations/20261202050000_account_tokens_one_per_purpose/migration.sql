-- At most one emailed link per person and purpose, held by the database itself: two links asked for at
-- the same moment could otherwise both stay valid, where only the newest may work.

-- Older duplicates go first (only the newest link of each person and purpose ever worked).
DELETE FROM "account_tokens" AS "older"
USING "account_tokens" AS "newer"
WHERE "older"."user_id" = "newer"."user_id"
  AND "older"."purpose" = "newer"."purpose"
  AND ("older"."created_at", "older"."id") < ("newer"."created_at", "newer"."id");

-- DropIndex
DROP INDEX "account_tokens_user_id_purpose_idx";

-- CreateIndex
CREATE UNIQUE INDEX "account_tokens_user_id_purpose_key" ON "account_tokens"("user_id", "purpose");
