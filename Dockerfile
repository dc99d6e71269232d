# Gatehouse for production: Node.js 24, production dependencies only, running as an unprivileged user.
# Node 24 runs the TypeScript sources directly; there is no build output.

FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
# The full install runs the postinstall step (prisma generate); pruning then drops the dev tools.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY --from=dependencies /app/src/db/generated ./src/db/generated
COPY package.json ./
COPY prisma ./prisma
COPY bin ./bin
COPY src ./src
COPY views ./views
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:3000/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# The same Node.js options as `npm start` (README, "Memory"): V8's young generation sized for a server of many short
# requests, not from the memory the container has.
CMD ["node", "--max-semi-space-size=16", "src/main.ts"]
