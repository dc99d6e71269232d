-- The longest token lifetime in force while a key signs, raised as it is seen: a lifetime lowered before the key
-- retires must not cut short the publication its earlier, longer-lived tokens need.
ALTER TABLE "signing_keys" ADD COLUMN "longest_lifetime_seconds" INTEGER;
