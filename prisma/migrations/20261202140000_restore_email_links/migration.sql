-- Links that undo a change of email address, sent to the previous address.
-- AlterEnum
ALTER TYPE "account_token_purpose" ADD VALUE 'restore_email';
