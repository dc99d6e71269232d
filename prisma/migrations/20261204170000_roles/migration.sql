-- Roles, and the API scopes each permits the people given it. Every role already named on a user exists.
-- CreateTable
CREATE TABLE "roles" (
    "name" TEXT NOT NULL,
    "description" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "roles_pkey" PRIMARY KEY ("name")
);

-- CreateTable
CREATE TABLE "role_permissions" (
    "role_name" TEXT NOT NULL,
    "api_id" UUID NOT NULL,
    "scope" TEXT NOT NULL,

    CONSTRAINT "role_permissions_pkey" PRIMARY KEY ("role_name","api_id","scope")
);

-- CreateIndex
CREATE INDEX "role_permissions_api_id_idx" ON "role_permissions"("api_id");

-- AddForeignKey
ALTER TABLE "role_permissions" ADD CONSTRAINT "role_permissions_role_name_fkey" FOREIGN KEY ("role_name") REFERENCES "roles"("name") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "role_permissions" ADD CONSTRAINT "role_permissions_api_id_fkey" FOREIGN KEY ("api_id") REFERENCES "apis"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- The administrators' role, and every role people were given before roles were records.
INSERT INTO "roles" ("name", "description") VALUES ('admin', 'Administrators') ON CONFLICT DO NOTHING;
INSERT INTO "roles" ("name") SELECT DISTINCT unnest("roles") FROM "users" ON CONFLICT DO NOTHING;
