-- API scopes a person allowed an application, remembered like its other scopes: "<resource indicator> <scope>".
ALTER TABLE "consents" ADD COLUMN "resource_scopes" TEXT[] DEFAULT ARRAY[]::TEXT[];
