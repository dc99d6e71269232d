-- Deleting a role takes its name from the people who had it, in the same transaction; roles deleted before that was so
-- left their names on accounts, where a role made again with one of them would give it back unasked. Taken away here.
UPDATE "users"
SET "roles" = ARRAY(
    SELECT "held"."name" FROM unnest("users"."roles") WITH ORDINALITY AS "held"("name", "position")
    WHERE "held"."name" IN (SELECT "name" FROM "roles") ORDER BY "held"."position"
  ),
  "updated_at" = CURRENT_TIMESTAMP
WHERE NOT ("roles" <@ ARRAY(SELECT "name" FROM "roles"));
