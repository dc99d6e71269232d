-- APIs (resource servers) that accept Gatehouse's access tokens, named by their resource indicator (RFC 8707).
-- CreateTable
CREATE TABLE "apis" (
    "id" UUID NOT NULL,
    "identifier" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "scopes" JSONB NOT NULL DEFAULT '[]',
    "access_token_format" TEXT NOT NULL DEFAULT 'jwt',
    "access_token_ttl" INTEGER NOT NULL,
    "signing_alg" TEXT NOT NULL DEFAULT 'ES256',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "apis_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "apis_identifier_key" ON "apis"("identifier");
